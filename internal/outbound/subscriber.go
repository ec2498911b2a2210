package outbound

import (
	"bufio"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// What a subscriber can make us hold on its read side: each frame it sends
// (a subscription, a command, anything an XSUB sends upstream) is at most
// maxFrame bytes, and it holds at most maxPrefixes subscriptions of at most
// maxPrefixBytes in all. fedmsg topics are well under 256 bytes.
const (
	maxFrame       = 1024
	maxPrefixes    = 1000
	maxPrefixBytes = 64 << 10
	prefixCost     = 64 // a distinct prefix's map entry beside its bytes
)

var pingFrame = zmtp.AppendFrame(nil, zmtp.FlagCommand, zmtp.PingCommand)

// subscriber is one SUB or XSUB connection: a PUB socket's view of it. Its
// reader reads subscriptions and commands, its writer writes its queue, a
// timer pings it.
type subscriber struct {
	srv  *Server
	nc   net.Conn
	peer string
	r    *bufio.Reader

	// mu guards the queue and prefixes: taken by Publish once per batch,
	// by the writer once per write and by the reader per subscription.
	mu       sync.Mutex
	queue    []*message
	pong     []byte // a PONG frame to send, nil when none
	pingDue  bool
	closing  bool           // Close: write what is queued, then end
	started  bool           // the writer runs
	prefixes map[string]int // subscriptions, with multiplicity as libzmq keeps them
	lengths  []int          // the distinct prefixes' lengths, ascending, for matching
	charged  int64          // prefix bytes charged to the budget

	queuedBytes atomic.Int64  // queued and being written; changed under mu
	held        atomic.Int64  // subscriptions, with multiplicity
	sent        atomic.Uint64 // messages written
	dropped     atomic.Uint64 // messages not queued for it
	wake        chan struct{} // tells the writer there is something to write

	writing atomic.Bool // the writer is inside a write: it judges stalls

	endpoint.Peer
	writerDone chan struct{}
}

// signal wakes the writer.
func (c *subscriber) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// finish asks the writer to end once the queue is written (Close). A
// subscriber still in its handshake has nothing queued: it is closed at once.
func (c *subscriber) finish() {
	c.mu.Lock()
	c.closing = true
	started := c.started
	c.mu.Unlock()
	if !started {
		c.Close(ReasonShutdown)
		return
	}
	c.signal()
}

// run serves the connection to its end and cleans up after it.
func (c *subscriber) run() {
	s := c.srv
	defer s.wg.Done()
	handshaken := false
	reason := c.serve(&handshaken)
	c.Close(reason)
	if handshaken {
		<-c.writerDone
	}
	s.forget(c)
	c.mu.Lock()
	for _, m := range c.queue {
		s.unref(m)
	}
	if n := uint64(len(c.queue)); n > 0 { // never written: lost, as with libzmq, but counted
		c.dropped.Add(n)
		s.drops[dropDisconnected].Add(n)
	}
	c.queue = nil
	c.queuedBytes.Store(0)
	s.budget.Release(c.charged)
	c.charged = 0
	c.mu.Unlock()
	if n := c.held.Swap(0); n != 0 {
		s.subscriptionsChanged(-int(n))
	}
	if !handshaken {
		s.event(Event{Kind: endpoint.HandshakeFailed, Reason: reason, Peer: c.peer})
	}
	s.event(Event{Kind: endpoint.Disconnected, Reason: reason, Peer: c.peer, Sent: c.sent.Load(), Dropped: c.dropped.Load()})
}

// serve runs the connection and returns why it ended.
func (c *subscriber) serve(handshaken *bool) string {
	s := c.srv
	if !s.budget.Reserve(connCost) {
		return ReasonOverShare
	}
	s.budget.Join()
	defer func() {
		s.budget.Leave()
		s.budget.Release(connCost)
	}()
	if err := c.handshake(); err != nil {
		return c.endReason(err, ReasonHandshake)
	}
	c.mu.Lock()
	if c.closing { // Close came during the handshake
		c.mu.Unlock()
		return ReasonShutdown
	}
	c.started = true
	c.mu.Unlock()
	*handshaken = true
	s.addSubscriber(c)
	go c.writeLoop()
	if ivl := s.opts.HeartbeatInterval; ivl > 0 {
		// The writer pings (a SUB's PONG is its only word); one stuck in a
		// write judges the peer stalled instead.
		c.StartHeartbeat(ivl, c.pingDueNow, c.writing.Load)
		defer c.StopHeartbeat()
	}
	return c.endReason(c.readLoop(), ReasonProtocol)
}

// endReason is Peer's EndReason, and a reset counts as the peer closing:
// a subscriber that closes with our bytes unread resets.
func (c *subscriber) endReason(err error, otherwise string) string {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		otherwise = ReasonPeerClosed
	}
	return c.EndReason(err, otherwise)
}

// handshake greets the peer as a PUB socket and expects a SUB or XSUB, all
// within HandshakeTimeout. Our greeting says ZMTP 3.0, so libzmq peers send
// subscriptions as messages; 3.1 commands are understood too.
func (c *subscriber) handshake() error {
	if t := c.srv.opts.HandshakeTimeout; t > 0 {
		c.nc.SetDeadline(time.Now().Add(t))
	}
	out := append(append([]byte(nil), zmtp.Greeting...), zmtp.AppendFrame(nil, zmtp.FlagCommand, zmtp.ReadyCommand("PUB"))...)
	if _, err := c.nc.Write(out); err != nil {
		return err
	}
	if err := zmtp.ReadGreeting(c.r); err != nil {
		return err
	}
	flags, size, err := zmtp.ReadHeader(c.r)
	if err != nil {
		return err
	}
	if flags&zmtp.FlagCommand == 0 || size > maxFrame {
		return endpoint.Errorf(ReasonHandshake, "expected READY, got flags %#x size %d", flags, size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return err
	}
	if err := zmtp.CheckReady(flags, body, "SUB", "XSUB"); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Time{}) // from now on the heartbeat watches the peer
	return nil
}

// readLoop reads what the subscriber sends until it ends: subscriptions as
// ZMTP 3.0 messages or 3.1 commands, PING and PONG. Anything else (an XSUB
// may send messages upstream) is read and ignored.
func (c *subscriber) readLoop() error {
	var frame [maxFrame]byte
	inMessage := false // a frame after one with MORE: not a subscription
	for {
		flags, n, err := zmtp.ReadHeader(c.r)
		if err != nil {
			return err
		}
		c.Heard()
		if n > maxFrame {
			return endpoint.Errorf(ReasonOversize, "frame of %d bytes from a subscriber (at most %d)", n, maxFrame)
		}
		body := frame[:n]
		if _, err := io.ReadFull(c.r, body); err != nil {
			return err
		}
		if flags&zmtp.FlagCommand != 0 {
			if err := c.command(body); err != nil {
				return err
			}
			continue
		}
		whole := !inMessage && flags&zmtp.FlagMore == 0
		inMessage = flags&zmtp.FlagMore != 0
		if !whole || n == 0 {
			continue
		}
		switch body[0] {
		case zmtp.SubscribeByte:
			err = c.subscribe(body[1:])
		case zmtp.CancelByte:
			c.cancel(body[1:])
		}
		if err != nil {
			return err
		}
	}
}

// command handles a command frame: PING is answered (by the writer, between
// messages), SUBSCRIBE and CANCEL change subscriptions, the rest is ignored.
func (c *subscriber) command(body []byte) error {
	name, data, err := zmtp.ParseCommand(body)
	if err != nil {
		return &endpoint.ReasonError{Reason: ReasonProtocol, Err: err}
	}
	switch name {
	case "PING":
		pong := zmtp.AppendFrame(nil, zmtp.FlagCommand, zmtp.PongCommand(data))
		c.mu.Lock()
		c.pong = pong // only the latest is owed
		c.mu.Unlock()
		c.signal()
	case zmtp.SubscribeCommand:
		return c.subscribe(data)
	case zmtp.CancelCommand:
		c.cancel(data)
	}
	return nil
}

// subscribe adds one subscription to prefix; a new distinct prefix is
// charged to the budget.
func (c *subscriber) subscribe(prefix []byte) error {
	c.mu.Lock()
	n, ok := c.prefixes[string(prefix)]
	if !ok {
		cost := int64(len(prefix)) + prefixCost
		if c.held.Load() >= maxPrefixes || c.charged+cost > maxPrefixBytes {
			c.mu.Unlock()
			return endpoint.Errorf(ReasonTooManyPrefixes, "over %d subscriptions or %d bytes of them", maxPrefixes, maxPrefixBytes)
		}
		if !c.srv.budget.Reserve(cost) {
			c.mu.Unlock()
			return endpoint.Errorf(ReasonOverShare, "no room in the budget for a subscription")
		}
		c.charged += cost
		c.insertLength(len(prefix))
	} else if c.held.Load() >= maxPrefixes {
		c.mu.Unlock()
		return endpoint.Errorf(ReasonTooManyPrefixes, "over %d subscriptions", maxPrefixes)
	}
	c.prefixes[string(prefix)] = n + 1
	c.held.Add(1)
	c.mu.Unlock()
	c.srv.subscriptionsChanged(1)
	return nil
}

// cancel removes one subscription to prefix; one never made is ignored, as
// libzmq does.
func (c *subscriber) cancel(prefix []byte) {
	c.mu.Lock()
	n, ok := c.prefixes[string(prefix)]
	if !ok {
		c.mu.Unlock()
		return
	}
	if n > 1 {
		c.prefixes[string(prefix)] = n - 1
	} else {
		delete(c.prefixes, string(prefix))
		cost := int64(len(prefix)) + prefixCost
		c.charged -= cost
		c.srv.budget.Release(cost)
		c.removeLength(len(prefix))
	}
	c.held.Add(-1)
	c.mu.Unlock()
	c.srv.subscriptionsChanged(-1)
}

// insertLength and removeLength keep lengths, one entry per distinct
// prefix length in use; c.mu held.
func (c *subscriber) insertLength(n int) {
	if i, found := slices.BinarySearch(c.lengths, n); !found {
		c.lengths = slices.Insert(c.lengths, i, n)
	}
}

func (c *subscriber) removeLength(n int) {
	for p := range c.prefixes {
		if len(p) == n {
			return // another prefix of that length remains
		}
	}
	if i, found := slices.BinarySearch(c.lengths, n); found {
		c.lengths = slices.Delete(c.lengths, i, i+1)
	}
}

// matches reports whether topic starts with one of the prefixes: one map
// lookup per distinct prefix length; c.mu held.
func (c *subscriber) matches(topic []byte) bool {
	for _, n := range c.lengths {
		if n > len(topic) {
			return false
		}
		if c.prefixes[string(topic[:n])] > 0 {
			return true
		}
	}
	return false
}

// enqueue queues the batch's messages that match, encoding each on first
// use (msgs is shared by all subscribers of the batch), within the
// subscriber's share and HWM; what does not fit is dropped and counted.
func (c *subscriber) enqueue(topics, bodies [][]byte, msgs []*message, share int64, drops *[numDrops]uint64) {
	s := c.srv
	var dropped uint64
	c.mu.Lock()
	if c.closing || c.IsGone() || len(c.lengths) == 0 {
		c.mu.Unlock()
		return
	}
	was := len(c.queue)
	queued := c.queuedBytes.Load()
	for i, topic := range topics {
		if !c.matches(topic) {
			continue
		}
		m := msgs[i]
		if m == nil {
			m = s.encode(topic, bodies[i])
			if m == noRoom {
				// Waiting for room, let the writer free what it writes.
				c.queuedBytes.Store(queued)
				if len(c.queue) > was {
					c.signal()
				}
				c.mu.Unlock()
				m = s.encodeWhenRoom(topic, bodies[i])
				c.mu.Lock()
				msgs[i] = m
				if c.closing || c.IsGone() { // its queue is being given back
					break
				}
				was, queued = len(c.queue), c.queuedBytes.Load()
			}
			msgs[i] = m
		}
		reason := -1
		switch {
		case m == noRoom:
			reason = dropBudget
		case s.opts.HWM > 0 && len(c.queue) >= s.opts.HWM:
			reason = dropHWM
		case queued+m.cost() > share:
			reason = dropShare
		}
		if reason >= 0 {
			drops[reason]++
			dropped++
			continue
		}
		m.refs.Add(1)
		c.queue = append(c.queue, m)
		queued += m.cost()
	}
	c.queuedBytes.Store(queued)
	wake := was == 0 && len(c.queue) > 0
	c.mu.Unlock()
	if dropped > 0 {
		c.dropped.Add(dropped)
	}
	if wake {
		c.signal()
	}
}

// writeLoop writes the queue, PONGs and PINGs until the connection ends,
// with one writev per turn.
func (c *subscriber) writeLoop() {
	defer close(c.writerDone)
	var batch []*message
	var bufs net.Buffers
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && c.pong == nil && !c.pingDue && !c.closing {
			c.mu.Unlock()
			select {
			case <-c.wake:
			case <-c.Gone():
				return
			}
			c.mu.Lock()
		}
		batch, c.queue = c.queue, batch[:0]
		bufs = bufs[:0]
		for _, m := range batch {
			bufs = append(bufs, m.buf)
		}
		if c.pong != nil {
			bufs = append(bufs, c.pong)
			c.pong = nil
		}
		if c.pingDue {
			bufs = append(bufs, pingFrame)
			c.pingDue = false
		}
		done := c.closing && len(bufs) == 0
		c.mu.Unlock()
		if done {
			c.Close(ReasonShutdown)
			return
		}
		err := c.write(&bufs)
		c.written(batch, err)
		clear(batch)
		if err != nil {
			c.Close(c.writeReason(err))
			return
		}
	}
}

// written gives back what one write took from the queue; a failed write's
// messages count as dropped (some may have reached the peer).
func (c *subscriber) written(batch []*message, err error) {
	var bytes int64
	for _, m := range batch {
		bytes += m.cost()
		c.srv.unref(m)
	}
	c.mu.Lock()
	c.queuedBytes.Add(-bytes)
	c.mu.Unlock()
	if err == nil {
		c.sent.Add(uint64(len(batch)))
	} else if len(batch) > 0 {
		c.dropped.Add(uint64(len(batch)))
		c.srv.drops[dropDisconnected].Add(uint64(len(batch)))
	}
}

// errStalled ends a subscriber that took nothing for the stall bound.
var errStalled = errors.New("no write progress")

// write writes bufs whole. A write that times out having written something
// is a slow reader and goes on; one that wrote nothing in the stall bound
// (three heartbeat intervals) is a stalled subscriber. Once Close began,
// writes end at its linger deadline.
func (c *subscriber) write(bufs *net.Buffers) error {
	c.writing.Store(true)
	defer c.writing.Store(false)
	for len(*bufs) > 0 {
		deadline := time.Now().Add(c.srv.stall)
		lingering := false
		if l := c.srv.lingerUntil.Load(); l != 0 && l < deadline.UnixNano() {
			deadline, lingering = time.Unix(0, l), true
		}
		c.nc.SetWriteDeadline(deadline)
		n, err := bufs.WriteTo(c.nc)
		var ne net.Error
		switch {
		case err == nil:
			return nil
		case !errors.As(err, &ne) || !ne.Timeout():
			return err
		case lingering:
			return endpoint.Errorf(ReasonShutdown, "linger passed")
		case n == 0:
			return errStalled
		}
	}
	return nil
}

func (c *subscriber) writeReason(err error) string {
	if errors.Is(err, errStalled) {
		return ReasonStalled
	}
	return c.endReason(err, ReasonPeerClosed)
}

// pingDueNow has the writer ping the peer.
func (c *subscriber) pingDueNow() error {
	c.mu.Lock()
	c.pingDue = true
	c.mu.Unlock()
	c.signal()
	return nil
}
