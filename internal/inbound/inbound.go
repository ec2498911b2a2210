// Package inbound terminates the relay's inbound ZMTP connections in Go.
//
// libzmq holds every frame of an unfinished multipart message, and its
// queue limits count whole messages per connection, so a single peer can
// grow a libzmq SUB socket without bound. Here each PUB producer is read by
// its own goroutine that checks a message's size before it reads a frame
// body, stores only the two frames a fedmsg message has, and holds what it
// reads within the relay's one byte budget (membudget), shared fairly by
// all connections and the rest of the relay. Complete messages wait in one
// queue that the forwarding loop takes in batches.
package inbound

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
)

// Options configure the listener.
type Options struct {
	Endpoints []string       // tcp://HOST:PORT, tcp://*:PORT, tcp://[::1]:PORT, ipc:///path
	Inherited map[string]int // endpoint -> listening socket passed by systemd
	IPv6      bool           // tcp://*:PORT listens on IPv6 too

	// ConfirmEndpoints serve confirming clients (a ROUTER's view of DEALER
	// and REQ peers) within the same budget and MaxConnections: each
	// message is answered through Reply.
	ConfirmEndpoints []string

	MaxMessageBytes int64 // all frames of one message together
	// Budget is the relay's byte budget, which every connection's bytes
	// are charged to and whose fair share bounds each connection.
	Budget            *membudget.Budget
	MaxConnections    int
	HandshakeTimeout  time.Duration
	HeartbeatInterval time.Duration
	TCPKeepalive      bool

	// Notify is called when the queue of complete messages becomes
	// non-empty after a Take found it empty. It must not block.
	Notify func()
	// Event reports connections accepted and ended, and confirm replies
	// dropped. It must not block.
	Event func(Event)
}

// Event is one connection event; Confirm says it is a confirming client's.
type Event = endpoint.Event

// Disconnect reasons: endpoint's, which both engines give, and the
// confirming clients' own.
const (
	ReasonPeerClosed = endpoint.ReasonPeerClosed
	ReasonHandshake  = endpoint.ReasonHandshake
	ReasonProtocol   = endpoint.ReasonProtocol
	ReasonTimeout    = endpoint.ReasonTimeout
	ReasonOversize   = endpoint.ReasonOversize
	ReasonOverShare  = endpoint.ReasonOverShare
	ReasonTooMany    = endpoint.ReasonTooMany
	ReasonShutdown   = endpoint.ReasonShutdown
	ReasonStalled    = "reply_stalled" // a confirming client that does not read its replies
)

// Reasons lists every disconnect reason, for registering metrics up front.
func Reasons() []string { return append(endpoint.Reasons(), ReasonStalled) }

// connCost is what a connection costs before it holds any message: its
// goroutine's stack, buffers and bookkeeping, counted in the budget.
const connCost = 20 << 10

// Message is one complete message as received. Topic and Body are the first
// two frames (nil when absent); Frames and Size count every frame.
type Message struct {
	Topic, Body []byte
	Frames      int
	Size        int
	conn        *conn
	held        int64   // budget bytes, released by Release
	buf         *[]byte // Topic's and Body's buffer, pooled: Release gives it back
}

// readBufferSize is a connection's read buffer: one read from the socket
// takes up to this much, several messages of the usual size. A producer
// that keeps it full gets streamBufferSize, if the budget has room.
const (
	readBufferSize   = 8 << 10
	streamBufferSize = 64 << 10
)

// Server accepts producers and confirming clients on every endpoint until Stop.
type Server struct {
	opts      Options
	listeners []listener
	budget    *budget
	wg        sync.WaitGroup

	mu       sync.Mutex // taken once per read from a socket, not per message
	pending  []Message
	head     int
	armed    bool // a Take found the queue empty: the next push notifies
	stopped  bool
	connSet  map[*conn]struct{}
	numConns int
}

// Listen binds (or adopts) every endpoint and starts accepting.
func Listen(o Options) (_ *Server, err error) {
	if o.Notify == nil {
		o.Notify = func() {}
	}
	if o.Event == nil {
		o.Event = func(Event) {}
	}
	if o.Budget == nil {
		return nil, errors.New("inbound: no byte budget given")
	}
	// A connection may always hold one whole message of the largest size.
	floor := o.MaxMessageBytes + connCost
	s := &Server{opts: o, budget: newBudget(o.Budget, floor, max(o.HandshakeTimeout, time.Second)), connSet: map[*conn]struct{}{}}
	// Messages accepted for delivery come before unfinished ones: the rest
	// of the relay, short of room, takes it back from stalled peers.
	o.Budget.SetReclaimer(func(need int64) bool { return s.budget.evict(nil, need) })
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	for confirm, eps := range [][]string{o.Endpoints, o.ConfirmEndpoints} {
		for _, ep := range eps {
			l, err := endpoint.Listen(ep, endpoint.Options{Inherited: o.Inherited, IPv6: o.IPv6, TCPKeepalive: o.TCPKeepalive})
			if err != nil {
				return nil, err
			}
			s.listeners = append(s.listeners, listener{l, confirm == 1})
		}
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go s.accept(l)
	}
	return s, nil
}

// listener is a listening socket and whether it is a confirm endpoint.
type listener struct {
	net.Listener
	confirm bool
}

func (s *Server) accept(l listener) {
	defer s.wg.Done()
	endpoint.Accept(l, func(nc net.Conn) { s.start(nc, l.confirm) })
}

func (s *Server) start(nc net.Conn, confirm bool) {
	c := &conn{srv: s, nc: nc}
	c.Init(nc)
	if confirm {
		c.confirm = newConfirmConn()
	}
	s.event(Event{Kind: endpoint.Accepted, Confirm: confirm})
	s.mu.Lock()
	refuse := ""
	switch {
	case s.stopped:
		refuse = ReasonShutdown
	case s.opts.MaxConnections > 0 && s.numConns >= s.opts.MaxConnections:
		refuse = ReasonTooMany
	default:
		s.numConns++
		s.connSet[c] = struct{}{}
	}
	s.mu.Unlock()
	if refuse != "" {
		nc.Close()
		s.event(Event{Kind: endpoint.Disconnected, Reason: refuse, Confirm: confirm})
		return
	}
	c.r = bufio.NewReaderSize(flushingReader{c}, readBufferSize)
	c.w = bufio.NewWriterSize(nc, 256)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		reason := c.serve()
		c.flush()
		c.Close(reason)
		s.budget.leave(c)
		s.forget(c)
		if !c.handshaken {
			s.event(Event{Kind: endpoint.HandshakeFailed, Reason: reason, Confirm: confirm})
		}
		s.event(Event{Kind: endpoint.Disconnected, Reason: reason, Confirm: confirm})
	}()
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.connSet[c]; ok {
		delete(s.connSet, c)
		s.numConns--
	}
}

func (s *Server) event(e Event) { s.opts.Event(e) }

// push adds the messages a connection read to the queue, and tells the
// forwarding loop if it found the queue empty since it was last told.
func (s *Server) push(msgs []Message) {
	s.mu.Lock()
	s.pending = append(s.pending, msgs...)
	notify := s.armed
	s.armed = false
	s.mu.Unlock()
	if notify {
		s.opts.Notify()
	}
}

// Take moves up to len(dst) queued messages, and not many more than
// maxBytes (always at least one), into dst and returns how many. The
// messages stay counted in the budget until Release. When the queue is
// empty, the next message queued calls Notify.
func (s *Server) Take(dst []Message, maxBytes int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, bytes := 0, 0
	for n < len(dst) && s.head < len(s.pending) && (n == 0 || bytes < maxBytes) {
		m := s.pending[s.head]
		s.pending[s.head] = Message{}
		s.head++
		dst[n] = m
		bytes += m.Size
		n++
	}
	if s.head == len(s.pending) {
		s.pending, s.head = s.pending[:0], 0
		s.armed = true
	} else if s.head > len(s.pending)/2 { // keep the backing array from creeping
		s.pending, s.head = append(s.pending[:0], s.pending[s.head:]...), 0
	}
	return n
}

// Release returns the budget taken messages held, once the caller no
// longer needs their bytes (their buffers are reused): one release of the
// shared budget for them all.
func (s *Server) Release(msgs []Message) {
	var total, run int64 // run: what the last connection's consecutive messages held
	var last *conn
	for i := range msgs {
		m := &msgs[i]
		if m.conn != last {
			if last != nil {
				last.released.Add(run)
			}
			last, run = m.conn, 0
		}
		run += m.held
		total += m.held
		putBuffer(m.buf)
		*m = Message{}
	}
	if last != nil {
		last.released.Add(run)
	}
	if total > 0 {
		s.budget.shared.Release(total)
	}
}

// Held is how many bytes the producers connected hold of the budget now
// (for tests; the budget's Used counts everything).
func (s *Server) Held() int64 { return s.budget.connected() }

// Connections is how many producers are connected (handshakes included).
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.numConns
}

// Stop closes the listeners and every connection and waits for their
// goroutines. Messages already queued can still be taken.
func (s *Server) Stop() {
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Lock()
	s.stopped = true
	conns := make([]*conn, 0, len(s.connSet))
	for c := range s.connSet {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close(ReasonShutdown)
	}
	s.wg.Wait()
}

// HalfClose shuts down the sending direction of every producer's
// connection, so each producer's libzmq closes it after what it already
// sent (still read here) and keeps the rest for its next connection: the
// socket-activation hand over. Confirming clients need their replies: they
// are left to close once answered. It returns how many producers and
// confirming clients are still connected.
func (s *Server) HalfClose() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.connSet {
		if c.confirm != nil {
			continue
		}
		if hc, ok := c.nc.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite() // a second time, or on a closing connection: nothing to do
		}
	}
	return s.numConns
}
