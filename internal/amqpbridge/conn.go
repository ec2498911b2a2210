package amqpbridge

import (
	"net"
	"sync"
	"time"
)

// maxQueuedWrite bounds what batchingConn holds: a Write waits beyond it, so a
// slow broker still pushes back on the publisher.
const maxQueuedWrite = 1 << 20

// batchingConn joins the AMQP library's writes. The library flushes after
// every publish, one write(2) per message; here Write only queues, and one
// goroutine writes everything queued at once, so a burst of publishes shares
// a system call (perf showed the per-message writes at ~10% of a bridged
// relay's CPU). An idle connection loses nothing: the first queued Write
// wakes the writer at once. A failed write closes the connection, so the
// library's reader fails at once too, and later Writes return the error.
//
// batchingConn owns the write deadline, since a Write here only queues: each
// write(2) of a batch must finish within writeTimeout, or the connection
// fails. A broker that stopped reading will not confirm in time either, and
// without the deadline a full socket would hold the publisher in Write, past
// its confirm timeout. Deadlines callers set apply to reads only.
type batchingConn struct {
	net.Conn
	writeTimeout time.Duration
	mu           sync.Mutex
	cond         *sync.Cond // queued changed, the writer failed or Close was called
	queued       []byte
	err          error
	closed       bool
	done         chan struct{} // the writer returned
}

func newBatchingConn(c net.Conn, writeTimeout time.Duration) *batchingConn {
	b := &batchingConn{Conn: c, writeTimeout: writeTimeout, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.writeLoop()
	return b
}

func (b *batchingConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && !b.closed && len(b.queued) >= maxQueuedWrite {
		b.cond.Wait()
	}
	switch {
	case b.err != nil:
		return 0, b.err
	case b.closed:
		return 0, net.ErrClosed
	}
	if len(b.queued) == 0 {
		b.cond.Broadcast()
	}
	b.queued = append(b.queued, p...)
	return len(p), nil
}

// writeLoop writes what is queued until Close or a write error. Two buffers
// swap, so steady traffic allocates nothing.
func (b *batchingConn) writeLoop() {
	defer close(b.done)
	var out []byte
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for len(b.queued) == 0 && !b.closed {
			b.cond.Wait()
		}
		if len(b.queued) == 0 {
			return // closed, everything written
		}
		out, b.queued = b.queued, out[:0]
		b.cond.Broadcast() // room for waiting Writes
		b.mu.Unlock()
		err := b.Conn.SetWriteDeadline(time.Now().Add(b.writeTimeout))
		if err == nil {
			_, err = b.Conn.Write(out)
		}
		b.mu.Lock()
		if err != nil {
			b.err = err
			b.cond.Broadcast()
			b.Conn.Close()
			return
		}
	}
}

// SetDeadline sets the read deadline; see batchingConn for writes.
func (b *batchingConn) SetDeadline(t time.Time) error { return b.Conn.SetReadDeadline(t) }

// SetWriteDeadline does nothing; see batchingConn.
func (b *batchingConn) SetWriteDeadline(time.Time) error { return nil }

// Close gives the writer a moment to send what is queued (the library's
// connection.close), then closes the connection, which also ends a write
// stuck on an unresponsive peer.
func (b *batchingConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	select {
	case <-b.done:
	case <-time.After(closeTimeout):
	}
	err := b.Conn.Close()
	<-b.done
	return err
}
