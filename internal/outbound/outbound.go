// Package outbound terminates the relay's outbound ZMTP connections in Go:
// it is the PUB side that listeners' SUB (and XSUB) sockets connect to.
//
// libzmq's PUB bounds each subscriber's queue in messages only, with no
// total, and says nothing of what it drops. Here every message is encoded
// once (frame headers and bytes in one buffer) and shared by the queues of
// the subscribers it matches; it is charged once to the relay's byte budget
// and given back when the last of them wrote or dropped it. Each subscriber
// may queue its fair share of the budget and at most HWM messages; a
// message that does not fit is dropped for that subscriber alone (PUB
// semantics) and counted for it and by reason. A writer goroutine per
// subscriber writes its queue with writev; one that makes no progress for
// three heartbeat intervals is disconnected as stalled.
package outbound

import (
	"bufio"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// Options configure the publisher.
type Options struct {
	Endpoints []string       // tcp://HOST:PORT, tcp://*:PORT, tcp://[::1]:PORT, ipc:///path
	Inherited map[string]int // endpoint -> listening socket passed by systemd
	IPv6      bool           // tcp://*:PORT listens on IPv6 too

	// Budget is the relay's one byte budget: queued messages, subscriptions
	// and each connection's fixed cost are charged to it.
	Budget            *membudget.Budget
	MaxMessageBytes   int64 // a subscriber may always queue one message this large
	HWM               int   // messages queued per subscriber
	MaxConnections    int
	HandshakeTimeout  time.Duration
	HeartbeatInterval time.Duration
	TCPKeepalive      bool

	// Event reports connections accepted and ended. It must not block.
	Event func(Event)
}

// Event is one connection event; Peer names the subscriber, and on
// Disconnected Sent and Dropped count its messages.
type Event = endpoint.Event

// Disconnect reasons: endpoint's, which both engines give, and the
// subscribers' own.
const (
	ReasonPeerClosed      = endpoint.ReasonPeerClosed
	ReasonHandshake       = endpoint.ReasonHandshake
	ReasonProtocol        = endpoint.ReasonProtocol
	ReasonTimeout         = endpoint.ReasonTimeout
	ReasonOversize        = endpoint.ReasonOversize // a subscription (or upstream) frame over maxFrame
	ReasonOverShare       = endpoint.ReasonOverShare
	ReasonTooMany         = endpoint.ReasonTooMany
	ReasonShutdown        = endpoint.ReasonShutdown
	ReasonStalled         = "stalled_subscriber"
	ReasonTooManyPrefixes = "too_many_subscriptions"
)

// Reasons lists every disconnect reason, for registering metrics up front.
func Reasons() []string {
	return append(endpoint.Reasons(), ReasonStalled, ReasonTooManyPrefixes)
}

// Drop reasons: why a message was not queued for a subscriber.
const (
	DropHWM    = "hwm"    // the subscriber had HWM messages queued
	DropShare  = "share"  // its queued bytes would pass its share of the budget
	DropBudget = "budget" // the budget had no room for the message at all
	// DropDisconnected: queued, never written whole: the subscriber was
	// disconnected (stalled, gone, shut down) first.
	DropDisconnected = "disconnected"
)

// Indexes of the drop reasons in Dropped's result.
const (
	dropHWM = iota
	dropShare
	dropBudget
	dropDisconnected
	numDrops
)

// DropReasons lists every drop reason, in the order of Dropped's result.
func DropReasons() []string { return []string{DropHWM, DropShare, DropBudget, DropDisconnected} }

const (
	// connCost is what a subscriber costs before it queues anything: two
	// goroutines, buffers and bookkeeping, charged to the budget.
	connCost = 24 << 10
	// messageCost is a queued message's bookkeeping beside its bytes.
	messageCost = 64
	// stallWithoutHeartbeat bounds a write without progress when
	// heartbeats are off.
	stallWithoutHeartbeat = 30 * time.Second
	// roomWait bounds how long Publish waits, per batch, for the budget to
	// take back strangers' unfinished messages (membudget's Reclaim) before
	// it drops a message for want of room. The forwarding loop waiting is
	// backpressure: inbound is not taken meanwhile, TCP pushes producers back.
	roomWait = 100 * time.Millisecond
)

// message is one encoded message, shared by the queues of every subscriber
// it matched. refs counts the queues holding it, plus the publisher's own
// while it distributes the batch.
type message struct {
	buf  []byte
	refs atomic.Int32
}

// cost is what the message is charged in the budget and in each queue
// holding it.
func (m *message) cost() int64 { return int64(len(m.buf)) + messageCost }

// Server accepts subscribers on every endpoint until Close.
type Server struct {
	opts      Options
	budget    *membudget.Budget
	stall     time.Duration
	listeners []net.Listener
	wg        sync.WaitGroup

	// subs is what Publish matches against: handshaken subscribers,
	// replaced whole (copy on write) under mu.
	subs atomic.Pointer[[]*subscriber]

	mu          sync.Mutex
	conns       map[*subscriber]struct{} // every connection, handshakes included
	stopped     bool
	subsChanged chan struct{} // closed and replaced when subscriptions change

	subscriptions atomic.Int64  // held by every subscriber, with multiplicity
	accepted      atomic.Uint64 // connections so far, to name unnamed (ipc://) peers
	lingerUntil   atomic.Int64  // unix nanoseconds: writes end by then once closing
	drops         [numDrops]atomic.Uint64

	scratch   []*message // Publish's, one slot per message of the batch
	roomUntil time.Time  // Publish's: when this batch stops waiting for room
}

// Listen binds (or adopts) every endpoint and starts accepting.
func Listen(o Options) (_ *Server, err error) {
	if o.Event == nil {
		o.Event = func(Event) {}
	}
	if o.Budget == nil {
		return nil, errors.New("outbound: no byte budget")
	}
	s := &Server{opts: o, budget: o.Budget, stall: stallWithoutHeartbeat,
		conns: map[*subscriber]struct{}{}, subsChanged: make(chan struct{})}
	if o.HeartbeatInterval > 0 {
		s.stall = 3 * o.HeartbeatInterval
	}
	s.subs.Store(&[]*subscriber{})
	defer func() {
		if err != nil {
			s.Close(0)
		}
	}()
	for _, ep := range o.Endpoints {
		l, err := endpoint.Listen(ep, endpoint.Options{Inherited: o.Inherited, IPv6: o.IPv6, TCPKeepalive: o.TCPKeepalive})
		if err != nil {
			return nil, err
		}
		s.listeners = append(s.listeners, l)
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go s.accept(l)
	}
	return s, nil
}

func (s *Server) accept(l net.Listener) {
	defer s.wg.Done()
	endpoint.Accept(l, s.start)
}

func (s *Server) start(nc net.Conn) {
	c := &subscriber{srv: s, nc: nc, peer: peerName(nc, s.accepted.Add(1)), prefixes: map[string]int{},
		wake: make(chan struct{}, 1), writerDone: make(chan struct{})}
	c.Init(nc)
	s.event(Event{Kind: endpoint.Accepted, Peer: c.peer})
	s.mu.Lock()
	refuse := ""
	switch {
	case s.stopped:
		refuse = ReasonShutdown
	case s.opts.MaxConnections > 0 && len(s.conns) >= s.opts.MaxConnections:
		refuse = ReasonTooMany
	default:
		s.conns[c] = struct{}{}
	}
	s.mu.Unlock()
	if refuse != "" {
		nc.Close()
		s.event(Event{Kind: endpoint.Disconnected, Reason: refuse, Peer: c.peer})
		return
	}
	c.r = bufio.NewReaderSize(nc, 4<<10)
	s.wg.Add(1)
	go c.run()
}

func (s *Server) event(e Event) { s.opts.Event(e) }

// peerName is the peer's address, a metric label: an ipc:// peer has none,
// so it is named by its connection's number to stay unique.
func peerName(nc net.Conn, n uint64) string {
	if a := nc.RemoteAddr(); a != nil && a.Network() == "tcp" {
		return a.String()
	}
	return "unix#" + strconv.FormatUint(n, 10)
}

// addSubscriber makes a handshaken subscriber one Publish matches.
func (s *Server) addSubscriber(c *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.subs.Load()
	subs := make([]*subscriber, len(old), len(old)+1)
	copy(subs, old)
	subs = append(subs, c)
	s.subs.Store(&subs)
}

// forget removes an ended connection everywhere.
func (s *Server) forget(c *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	old := *s.subs.Load()
	subs := make([]*subscriber, 0, len(old))
	for _, o := range old {
		if o != c {
			subs = append(subs, o)
		}
	}
	s.subs.Store(&subs)
}

// Publish queues one batch of messages (parallel slices of topic and body)
// for every subscriber whose prefixes match its topic. It copies what it
// keeps and never blocks: a subscriber whose queue is full loses the
// message, counted, and nobody else does. Call it from one goroutine.
func (s *Server) Publish(topics, bodies [][]byte) {
	subs := *s.subs.Load()
	if len(subs) == 0 || len(topics) == 0 {
		return
	}
	if cap(s.scratch) < len(topics) {
		s.scratch = make([]*message, len(topics))
	}
	msgs := s.scratch[:len(topics)]
	s.roomUntil = time.Time{}
	share := max(s.budget.Fair(), s.opts.MaxMessageBytes)
	var drops [numDrops]uint64
	for _, c := range subs {
		c.enqueue(topics, bodies, msgs, share, &drops)
	}
	for i, m := range msgs {
		if m != nil && m != noRoom {
			s.unref(m)
		}
		msgs[i] = nil
	}
	for r, n := range drops {
		if n > 0 {
			s.drops[r].Add(n)
		}
	}
}

// noRoom marks, in Publish's scratch, a message the budget had no room for.
var noRoom = &message{}

// encode builds the message's frames once and charges it to the budget.
func (s *Server) encode(topic, body []byte) *message {
	size := zmtp.FrameSize(len(topic)) + zmtp.FrameSize(len(body))
	if !s.budget.Reserve(int64(size) + messageCost) {
		return noRoom
	}
	buf := make([]byte, 0, size)
	buf = zmtp.AppendFrame(buf, zmtp.FlagMore, topic)
	buf = zmtp.AppendFrame(buf, 0, body)
	m := &message{buf: buf}
	m.refs.Store(1) // the publisher's, until the batch is distributed
	return m
}

// encodeWhenRoom is encode once the budget took back room from those
// holding unfinished messages (membudget's Reclaim), waiting for it at most
// roomWait per batch; noRoom if there is none to take back or it did not
// come in time.
func (s *Server) encodeWhenRoom(topic, body []byte) *message {
	need := int64(zmtp.FrameSize(len(topic))+zmtp.FrameSize(len(body))) + messageCost
	if s.roomUntil.IsZero() {
		s.roomUntil = time.Now().Add(roomWait)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		changed := s.budget.Changed() // before encode: a release in between wakes us
		if m := s.encode(topic, body); m != noRoom {
			return m
		}
		left := time.Until(s.roomUntil)
		if left <= 0 || !s.budget.Reclaim(need) {
			return noRoom
		}
		if timer == nil {
			timer = time.NewTimer(left)
		}
		select {
		case <-changed:
		case <-timer.C:
			s.roomUntil = time.Now() // spent: the rest of the batch does not wait
			return s.encode(topic, body)
		}
	}
}

// unref drops one reference; the last gives the bytes back to the budget.
func (s *Server) unref(m *message) {
	if m.refs.Add(-1) == 0 {
		s.budget.Release(m.cost())
	}
}

// Dropped is how many messages subscribers lost, by DropReasons.
func (s *Server) Dropped() [numDrops]uint64 {
	var d [numDrops]uint64
	for i := range d {
		d[i] = s.drops[i].Load()
	}
	return d
}

// Subscriptions waits at most timeout for the subscriptions to change and
// returns how many the subscribers hold now, with multiplicity (a listener
// subscribed to "" holds one), as libzmq's XPUB reports them.
func (s *Server) Subscriptions(timeout time.Duration) int {
	if timeout <= 0 {
		return int(s.subscriptions.Load())
	}
	s.mu.Lock()
	changed := s.subsChanged
	s.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	}
	return int(s.subscriptions.Load())
}

// subscriptionsChanged adds n to the count and wakes Subscriptions.
func (s *Server) subscriptionsChanged(n int) {
	s.subscriptions.Add(int64(n))
	s.mu.Lock()
	close(s.subsChanged)
	s.subsChanged = make(chan struct{})
	s.mu.Unlock()
}

// SubscriberStats describe one connected subscriber.
type SubscriberStats struct {
	Peer          string
	Sent, Dropped uint64
	QueuedBytes   int64
	Subscriptions int
}

// Subscribers lists the handshaken subscribers (at most MaxConnections).
func (s *Server) Subscribers() []SubscriberStats {
	subs := *s.subs.Load()
	out := make([]SubscriberStats, 0, len(subs))
	for _, c := range subs {
		out = append(out, SubscriberStats{Peer: c.peer, Sent: c.sent.Load(), Dropped: c.dropped.Load(),
			QueuedBytes: c.queuedBytes.Load(), Subscriptions: int(c.held.Load())})
	}
	return out
}

// Close stops accepting, lets every subscriber's writer write what is
// queued for at most linger, then closes every connection and waits for
// their goroutines.
func (s *Server) Close(linger time.Duration) {
	for _, l := range s.listeners {
		l.Close()
	}
	deadline := time.Now().Add(linger)
	s.lingerUntil.Store(deadline.UnixNano())
	s.mu.Lock()
	s.stopped = true
	conns := make([]*subscriber, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.finish()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	for _, c := range conns {
		c.Close(ReasonShutdown)
	}
	<-done
}
