package inbound

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

var errClosed = errors.New("connection closed by the relay")

// maxCommand bounds a command frame (READY, PING): libzmq's are well under.
const maxCommand = 1024

// maxReadBatch bounds the messages a connection keeps before it queues
// them, if one read from the socket brings more (tiny ones): the slice it
// keeps them in is not charged to the budget.
const maxReadBatch = 32

// maxScratchTopic bounds a topic read into the connection's scratch space,
// so that topic and body share one allocation once the body's size is
// known; fedmsg topics are well under it, longer ones get their own.
const maxScratchTopic = 256

// conn is one producer connection (a SUB socket's view of a PUB peer) or,
// with confirm set, one confirming client's (a ROUTER's view of a DEALER).
type conn struct {
	srv *Server
	nc  net.Conn
	r   *bufio.Reader
	wmu sync.Mutex // PONGs from the reader, PINGs from the timer, replies
	w   *bufio.Writer

	confirm *confirmConn // nil for producers

	// Budget bytes: what the reader charged (its cost, the frames it read,
	// what it reserved ahead), atomic for peers looking for one to evict;
	// what the forwarding loop released of it is on a cache line of its
	// own (released), so that neither stalls the other. unfinished is
	// partial as of the reader's last wait, for evictors.
	charged, unfinished atomic.Int64
	partial             int64 // of charged, its unfinished message's; the reader's
	credit              int64 // of charged, reserved ahead for its next frames; the reader's
	cost                int64 // its fixed cost, once joined; the reader's
	joined              bool  // counted as a holder of the budget; the reader's

	read   []Message             // complete messages not yet pushed to the queue; the reader's
	filled bool                  // the last read from the socket filled the read buffer; the reader's
	topic  [maxScratchTopic]byte // a topic frame, until the body's size is known; the reader's

	_        [64]byte     // keeps released off the reader's cache lines
	released atomic.Int64 // by the forwarding loop's Release
	_        [64]byte

	endpoint.Peer
	handshaken bool
}

// held is what the connection holds of the budget now.
func (c *conn) held() int64 { return c.charged.Load() - c.released.Load() }

// flushingReader queues the messages read just before the reader may wait
// for the peer, not each message: one lock and at most one wake-up of the
// forwarding loop per read from the socket, as libzmq's I/O thread does.
// It also settles what the reader reserved ahead.
type flushingReader struct{ c *conn }

func (r flushingReader) Read(p []byte) (int, error) {
	r.c.flush()
	r.c.srv.budget.settle(r.c)
	n, err := r.c.nc.Read(p)
	r.c.filled = n == len(p)
	return n, err
}

// flush pushes the messages read to the server's queue.
func (c *conn) flush() {
	if len(c.read) == 0 {
		return
	}
	c.srv.push(c.read)
	clear(c.read) // the queue has them; do not keep their bytes alive
	c.read = c.read[:0]
}

// serve runs the connection to its end and returns why it ended.
func (c *conn) serve() string {
	if err := c.srv.budget.join(c, c.fixedCost()); err != nil {
		return c.EndReason(err, ReasonOverShare)
	}
	err := c.handshake()
	if err != nil {
		return c.EndReason(err, ReasonHandshake)
	}
	c.handshaken = true
	if c.confirm != nil {
		c.srv.wg.Add(1)
		go c.writeReplies()
	}
	if ivl := c.srv.opts.HeartbeatInterval; ivl > 0 {
		c.StartHeartbeat(ivl, func() error { return c.writeCommand(zmtp.PingCommand) }, nil)
		defer c.StopHeartbeat()
	}
	for {
		err = c.readMessage()
		if err != nil {
			return c.EndReason(err, ReasonProtocol)
		}
		if c.filled && c.r.Size() < streamBufferSize {
			c.growReadBuffer()
		}
	}
}

// growReadBuffer gives a producer that keeps filling its read buffer a
// larger one, if its share and the budget have room for it: a steady
// stream then costs a read from the socket, a lock and a wake-up per 64 KiB
// rather than per 8 KiB. The connection keeps it, charged as part of its
// cost, until it disconnects; without room it tries again at the next
// full read.
func (c *conn) growReadBuffer() {
	c.filled = false
	if !c.srv.budget.reserveCost(c, streamBufferSize-readBufferSize) {
		return
	}
	var src io.Reader = flushingReader{c}
	if rest, _ := c.r.Peek(c.r.Buffered()); len(rest) > 0 {
		src = io.MultiReader(bytes.NewReader(bytes.Clone(rest)), src)
	}
	c.r = bufio.NewReaderSize(src, streamBufferSize)
}

func protocolError(format string, args ...any) error {
	return endpoint.Errorf(ReasonProtocol, format, args...)
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
	if err := zmtp.ReadGreeting(c.r); err != nil {
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
		// frames[0] is in c.topic until the body's buffer takes it
		topicInScratch bool
		pooled         *[]byte // the buffer of frames[0] and [1], if pooled
		size           int64
		limit          = c.srv.opts.MaxMessageBytes
		b              = c.srv.budget
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
		c.Heard()
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
			return endpoint.Errorf(ReasonOversize, "message over %d bytes", limit)
		}
		size += int64(n)
		if count >= 2 || size > limit {
			// Never stored: a third frame (the message is dropped for its
			// frame count) or the last frame of an oversize message.
			if _, err := io.CopyN(io.Discard, c.r, int64(n)); err != nil {
				return err
			}
		} else {
			// A short topic waits in c.topic; its body then takes one
			// buffer for both, charged whole if pooled.
			scratch := count == 0 && more && n <= maxScratchTopic
			join := count == 1 && topicInScratch
			charge := int64(n)
			if join {
				_, size := bufferClass(len(frames[0]) + int(n))
				charge = int64(size - len(frames[0]))
			}
			if err := b.reserve(c, charge, true); err != nil {
				return err
			}
			var dst []byte
			switch {
			case scratch:
				dst, topicInScratch = c.topic[:n], true
			case join:
				t := len(frames[0])
				var buf []byte
				buf, pooled = getBuffer(t + int(n))
				copy(buf, frames[0])
				frames[0], dst, topicInScratch = buf[:t:t], buf[t:], false
			default:
				dst = make([]byte, n)
			}
			if _, err := io.ReadFull(c.r, dst); err != nil {
				return err
			}
			frames[count] = dst
		}
		count++
		if !more {
			break
		}
	}
	if topicInScratch { // no body stored: an oversize message, kept for its drop
		frames[0] = bytes.Clone(frames[0])
	}
	// What its frames hold moves from the unfinished message to the queue.
	held := c.partial
	c.partial = 0
	c.read = append(c.read, Message{Topic: frames[0], Body: frames[1], Frames: count, Size: int(size), conn: c, held: held, buf: pooled})
	stored = true
	if len(c.read) == maxReadBatch {
		c.flush()
	}
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
		return &endpoint.ReasonError{Reason: ReasonProtocol, Err: err}
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
