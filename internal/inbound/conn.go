package inbound

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

var errClosed = errors.New("connection closed by the relay")

// maxCommand bounds a command frame (READY, PING): libzmq's are well under.
const maxCommand = 1024

// conn is one producer connection (a SUB socket's view of a PUB peer) or,
// with confirm set, one confirming client's (a ROUTER's view of a DEALER).
type conn struct {
	srv  *Server
	nc   net.Conn
	r    *bufio.Reader
	wmu  sync.Mutex // PONGs from the reader, PINGs from the timer, replies
	w    *bufio.Writer
	ping *time.Timer

	confirm *confirmConn // nil for producers

	// Bytes held, by state; guarded by srv.budget.mu, but partial, which
	// only the reader changes, may be read by it without.
	held, partial, queued int64

	notify bool        // a message was queued that the forwarding loop was not told of
	heard  atomic.Bool // the peer sent something since the last heartbeat
	silent int         // heartbeat intervals without a word, on the timer's goroutine

	gone       chan struct{}
	goneOnce   sync.Once
	reason     atomic.Pointer[string] // why the relay closed it, if it did
	handshaken bool
}

func (c *conn) isGone() bool {
	select {
	case <-c.gone:
		return true
	default:
		return false
	}
}

// close disconnects the peer for reason; the reader notices and cleans up.
func (c *conn) close(reason string) {
	c.goneOnce.Do(func() {
		c.reason.Store(&reason)
		close(c.gone)
		c.nc.Close()
	})
}

// notifyingReader tells the forwarding loop of queued messages just before
// the reader may wait for the peer, not for each message: one wake-up per
// read from the socket, as libzmq's I/O thread does, instead of one per
// message.
type notifyingReader struct{ c *conn }

func (r notifyingReader) Read(p []byte) (int, error) {
	r.c.flushNotify()
	return r.c.nc.Read(p)
}

func (c *conn) flushNotify() {
	if c.notify {
		c.notify = false
		c.srv.opts.Notify()
	}
}

// serve runs the connection to its end and returns why it ended.
func (c *conn) serve() string {
	if err := c.srv.budget.join(c, c.cost()); err != nil {
		return c.endReason(err, ReasonOverShare)
	}
	err := c.handshake()
	if err != nil {
		return c.endReason(err, ReasonHandshake)
	}
	c.handshaken = true
	if c.confirm != nil {
		c.srv.wg.Add(1)
		go c.writeReplies()
	}
	if ivl := c.srv.opts.HeartbeatInterval; ivl > 0 {
		c.ping = time.AfterFunc(time.Duration(math.MaxInt64), c.heartbeat)
		c.ping.Reset(ivl) // only now: heartbeat reads c.ping
		defer c.ping.Stop()
	}
	for {
		err = c.readMessage()
		if err != nil {
			return c.endReason(err, ReasonProtocol)
		}
	}
}

// endReason names why the connection ended: the relay's own reason if it
// closed it, else what the error says.
func (c *conn) endReason(err error, otherwise string) string {
	if r := c.reason.Load(); r != nil {
		return *r
	}
	var re *reasonError
	var ne net.Error
	switch {
	case errors.As(err, &re):
		return re.reason
	case errors.Is(err, errOverShare):
		return ReasonOverShare
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
		return ReasonPeerClosed
	}
	return otherwise
}

// reasonError is an error with the disconnect reason it counts as.
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }

func protocolError(format string, args ...any) error {
	return &reasonError{ReasonProtocol, fmt.Errorf(format, args...)}
}

// handshake greets the peer as a SUB socket, expects a PUB or XPUB and
// subscribes to everything (on a confirm endpoint: as a ROUTER, expects a
// DEALER or REQ), all within HandshakeTimeout.
func (c *conn) handshake() error {
	if t := c.srv.opts.HandshakeTimeout; t > 0 {
		c.nc.SetDeadline(time.Now().Add(t))
	}
	ours, peers := "SUB", []string{"PUB", "XPUB"}
	if c.confirm != nil {
		ours, peers = "ROUTER", confirmPeers
	}
	c.w.Write(zmtp.Greeting)
	zmtp.WriteFrame(c.w, zmtp.FlagCommand, zmtp.ReadyCommand(ours))
	if err := c.w.Flush(); err != nil {
		return err
	}
	var peer [zmtp.GreetingSize]byte
	if _, err := io.ReadFull(c.r, peer[:]); err != nil {
		return err
	}
	if err := zmtp.CheckGreeting(peer[:]); err != nil {
		return err
	}
	flags, body, err := c.readCommand()
	if err != nil {
		return err
	}
	if err := zmtp.CheckReady(flags, body, peers...); err != nil {
		return err
	}
	if c.confirm != nil {
		c.confirm.setPeer(body)
		c.nc.SetDeadline(time.Time{})
		return nil
	}
	// ZMTP 3.0 subscription: a message of 0x01 and the prefix, "" for all.
	zmtp.WriteFrame(c.w, 0, []byte{1})
	if err := c.w.Flush(); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Time{}) // from now on the heartbeat watches the peer
	return nil
}

// readCommand reads one frame that must be a command of bounded size.
func (c *conn) readCommand() (byte, []byte, error) {
	flags, size, err := zmtp.ReadHeader(c.r)
	if err != nil {
		return 0, nil, err
	}
	if flags&zmtp.FlagCommand == 0 || size > maxCommand {
		return 0, nil, protocolError("expected a command of at most %d bytes, got flags %#x size %d", maxCommand, flags, size)
	}
	body := make([]byte, size)
	_, err = io.ReadFull(c.r, body)
	return flags, body, err
}

// readMessage reads one message (answering commands met on the way) and
// queues it. Only the first two frames are stored; the size of every frame
// is checked against max_message_bytes before its body is read.
func (c *conn) readMessage() error {
	var (
		frames [2][]byte
		count  int
		size   int64
		limit  = c.srv.opts.MaxMessageBytes
		b      = c.srv.budget
		// A REQ peer's message starts with an empty delimiter frame.
		delimiter = c.confirm != nil && c.confirm.req
	)
	stored := false
	defer func() { // what an unfinished message held
		if !stored && c.partial > 0 {
			b.release(c, c.partial, true)
		}
	}()
	for {
		flags, n, err := zmtp.ReadHeader(c.r)
		if err != nil {
			return err
		}
		c.heard.Store(true)
		if flags&zmtp.FlagCommand != 0 {
			if count > 0 {
				return protocolError("command inside a message")
			}
			if err := c.command(flags, n); err != nil {
				return err
			}
			continue
		}
		more := flags&zmtp.FlagMore != 0
		if delimiter {
			if n != 0 || !more {
				return protocolError("REQ message without its empty delimiter frame")
			}
			delimiter = false
			continue
		}
		// A frame over the limit, or one that takes the message past it
		// with more to come, is refused before it is read: the message can
		// only be oversize, and its sender is cut off (as libzmq does).
		if n > uint64(limit) || (more && size+int64(n) > limit) {
			return &reasonError{ReasonOversize, fmt.Errorf("message over %d bytes", limit)}
		}
		size += int64(n)
		if count >= 2 || size > limit {
			// Never stored: a third frame (the message is dropped for its
			// frame count) or the last frame of an oversize message.
			if _, err := io.CopyN(io.Discard, c.r, int64(n)); err != nil {
				return err
			}
		} else {
			if err := b.reserve(c, int64(n), true); err != nil {
				return err
			}
			frames[count] = make([]byte, n)
			if _, err := io.ReadFull(c.r, frames[count]); err != nil {
				return err
			}
		}
		count++
		if !more {
			break
		}
	}
	c.srv.push(c, Message{Topic: frames[0], Body: frames[1], Frames: count, Size: int(size)})
	stored = true
	return nil
}

// command handles a command frame between messages: PING is answered,
// everything else (SUBSCRIBE, PONG, ...) is read and ignored.
func (c *conn) command(flags byte, n uint64) error {
	if n > maxCommand {
		return protocolError("command of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return err
	}
	name, data, err := zmtp.ParseCommand(body)
	if err != nil {
		return &reasonError{ReasonProtocol, err}
	}
	if name == "PING" {
		return c.writeCommand(zmtp.PongCommand(data))
	}
	return nil
}

func (c *conn) writeCommand(body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout()))
	zmtp.WriteFrame(c.w, zmtp.FlagCommand, body)
	return c.w.Flush()
}

// heartbeat runs every interval on a timer: it pings the peer (its PONG is
// a word from it even when it has nothing to send) and gives up a peer
// silent for three intervals. A flag the reader sets, not a read deadline
// per frame, keeps clock reads and timer updates off the message path.
func (c *conn) heartbeat() {
	if c.isGone() {
		return
	}
	if c.heard.Swap(false) {
		c.silent = 0
	} else if c.silent++; c.silent >= 3 {
		c.close(ReasonTimeout)
		return
	}
	if c.writeCommand(zmtp.PingCommand) != nil {
		c.close(ReasonTimeout)
		return
	}
	c.ping.Reset(c.srv.opts.HeartbeatInterval)
}
