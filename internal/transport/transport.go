// Package transport owns the relay's libzmq sockets: it binds them with the
// options that keep hostile peers in check and moves messages from the
// inbound sockets to the outbound PUB socket.
//
// Sockets are created and configured through github.com/pebbe/zmq4. The hot
// path is a small C loop (forward.c) over the same libzmq sockets that
// receives a batch of messages and sends them on as zero-copy zmq_msg_t
// moves: two cgo calls per batch instead of about twelve per message with
// pebbe's per-frame API, which is what keeps the relay near libzmq's own
// zmq_proxy speed with validation on.
package transport

/*
#cgo pkg-config: libzmq
#include <stdlib.h>
#include "forward.h"

static int socket_type(void *s) {
    int type = -1;
    size_t len = sizeof(type);
    if (zmq_getsockopt(s, ZMQ_TYPE, &type, &len) != 0) return -1;
    return type;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/inbound"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/outbound"
)

// Options configure the sockets. Zero durations leave libzmq's defaults.
type Options struct {
	Inbound  []string // SUB sockets bind here (fedmsg's relay_inbound)
	Confirm  []string // ROUTER for confirmed delivery (optional; in Go with EngineGo)
	Outbound []string // PUB binds here (fedmsg's relay_outbound)
	Inject   bool     // accept messages from in-process producers (NewInjector)
	// Inherited maps an endpoint to a listening socket systemd passed
	// (activation.Match): libzmq adopts it (ZMQ_USE_FD) instead of binding.
	Inherited map[string]int

	// InboundEngine terminates inbound ZMTP in Go (EngineGo, bounded by
	// Budget and MaxInboundConnections) or in a libzmq SUB socket
	// (EngineLibzmq, bounded per connection by InboundHWM).
	InboundEngine string
	// Budget is the relay's one byte budget, shared with the bridge; nil
	// makes one of BufferBytes.
	Budget                *membudget.Budget
	BufferBytes           int64
	MaxInboundConnections int
	// InboundEvent reports the Go engine's connection events.
	InboundEvent func(inbound.Event)
	// OutboundEngine publishes from Go (EngineGo: internal/outbound, queues
	// within Budget, drops counted per subscriber, at most
	// MaxOutboundConnections) or from a libzmq XPUB socket (EngineLibzmq).
	OutboundEngine         string
	MaxOutboundConnections int
	// OutboundEvent reports the Go engine's subscriber events.
	OutboundEvent func(outbound.Event)

	MaxMessageBytes   int64 // per frame with libzmq, per message with the Go engine, enforced before allocating
	InboundHWM        int
	OutboundHWM       int // per subscriber
	HandshakeTimeout  time.Duration
	HeartbeatInterval time.Duration
	TCPKeepalive      bool
	IPv6              bool
	Linger            time.Duration // how long Close waits for queued output
}

// Source says which kind of socket a message came in on.
type Source int

// Message sources.
const (
	FromSUB    Source = C.FWD_SUB
	FromRouter Source = C.FWD_ROUTER
	FromInject Source = C.FWD_PULL
)

// MaxBatch bounds the messages one Recv returns.
const MaxBatch = int(C.FWD_BATCH)

// Verdict codes for SetVerdict: Send, or Drop plus a drop reason.
const (
	Send = int(C.FWD_SEND)
	Drop = int(C.FWD_DROP)
	// sendReplaced is Send with a body ReplaceBody swapped in.
	sendReplaced = int(C.FWD_SEND_REPLACED)
	// MaxReasons bounds Drop+reason.
	MaxReasons = int(C.FWD_MAX_REASONS) - int(C.FWD_DROP)
)

// injectEndpoint is where in-process producers (the AMQP bridge) push.
const injectEndpoint = "inproc://fedmsg-relay-inject"

// Sockets is the relay's set of bound sockets and its forwarding loop state.
// Recv, Message, SetVerdict, ReplaceBody, Flush and StopInbound must be
// called from one goroutine (libzmq sockets are not thread-safe).
type Sockets struct {
	ctx       *zmq.Context
	pub       *zmq.Socket
	inbound   []*zmq.Socket // SUB, ROUTER and PULL if any, in fwd source order
	sub       *zmq.Socket
	confirm   *zmq.Socket              // ROUTER, nil without relay_inbound_confirm or with the Go engine
	bound     map[*zmq.Socket][]string // as libzmq resolved them (ZMQ_LAST_ENDPOINT)
	inherited map[string]int           // endpoint -> systemd's listening socket
	goIn      *goInbound               // the Go engine's listener, nil with libzmq's
	goOut     *goOutbound              // the Go engine's publisher, nil with libzmq's
	fwd       *C.fwd_t
	monitor   []*monitorSocket
	closed    atomic.Bool
}

// Open creates, configures and binds every socket. On error nothing is left open.
func Open(o Options) (_ *Sockets, err error) {
	ctx, err := zmq.NewContext()
	if err != nil {
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	s := &Sockets{ctx: ctx, bound: map[*zmq.Socket][]string{}}
	if o.Budget == nil {
		o.Budget = membudget.New(o.BufferBytes)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	s.inherited = o.Inherited
	var pub unsafe.Pointer // the loop publishes on it; nil: Flush hands the batch to the Go engine
	if o.OutboundEngine == EngineGo {
		if s.goOut, err = openGoOutbound(o); err != nil {
			return nil, err
		}
	} else {
		if err = s.openXPUB(o); err != nil {
			return nil, err
		}
		pub = rawSocket(s.pub)
	}
	s.fwd = C.fwd_new(pub)
	if s.fwd == nil {
		return nil, errors.New("allocate forwarder")
	}

	if o.InboundEngine == EngineGo {
		if err = s.openGoInbound(o); err != nil {
			return nil, err
		}
	} else if err = s.openSUB(o); err != nil {
		return nil, err
	}
	if len(o.Confirm) > 0 && s.goIn == nil {
		router, err := s.socket(zmq.ROUTER, o, o.Confirm)
		if err != nil {
			return nil, err
		}
		if err = s.addSource(router, C.FWD_ROUTER, o.Confirm); err != nil {
			return nil, err
		}
		s.confirm = router
	}
	if o.Inject {
		pull, err := s.socket(zmq.PULL, o, nil)
		if err != nil {
			return nil, err
		}
		if err = s.addSource(pull, C.FWD_PULL, []string{injectEndpoint}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// openXPUB binds the outbound endpoints on a libzmq XPUB socket.
func (s *Sockets) openXPUB(o Options) (err error) {
	// XPUB, not PUB: its peers' subscriptions are readable, which is how a
	// restarted relay knows its listeners are back (Subscriptions).
	if s.pub, err = s.socket(zmq.XPUB, o, o.Outbound); err != nil {
		return err
	}
	if err = s.pub.SetSndhwm(o.OutboundHWM); err != nil {
		return fmt.Errorf("set outbound hwm: %w", err)
	}
	if err = s.pub.SetXpubVerboser(1); err != nil { // every subscribe and unsubscribe, not only the first and last per topic
		return fmt.Errorf("set outbound xpub_verboser: %w", err)
	}
	return s.bind(s.pub, o.Outbound)
}

// openSUB binds the inbound endpoints on a libzmq SUB socket.
func (s *Sockets) openSUB(o Options) error {
	sub, err := s.socket(zmq.SUB, o, o.Inbound)
	if err != nil {
		return err
	}
	if err = sub.SetSubscribe(""); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err = s.addSource(sub, C.FWD_SUB, o.Inbound); err != nil {
		return err
	}
	s.sub = sub
	return nil
}

// socket creates a socket with the options common to every relay socket.
func (s *Sockets) socket(t zmq.Type, o Options, endpoints []string) (*zmq.Socket, error) {
	sock, err := s.ctx.NewSocket(t)
	if err != nil {
		return nil, fmt.Errorf("new %v socket: %w", t, err)
	}
	s.bound[sock] = nil // tracked for Close even before binding
	if err := verifyRawSocket(sock, t); err != nil {
		return nil, err
	}
	type sockOpt struct {
		name string
		set  func() error
	}
	set := []sockOpt{
		{"linger", func() error { return sock.SetLinger(o.Linger) }},
		{"rcvhwm", func() error { return sock.SetRcvhwm(o.InboundHWM) }},
		{"maxmsgsize", func() error { return sock.SetMaxmsgsize(o.MaxMessageBytes) }},
		{"ipv6", func() error { return sock.SetIpv6(o.IPv6) }},
	}
	if o.HandshakeTimeout > 0 {
		set = append(set, sockOpt{"handshake_ivl", func() error { return sock.SetHandshakeIvl(o.HandshakeTimeout) }})
	}
	if o.HeartbeatInterval > 0 {
		// A peer silent for three intervals is dead: free its resources.
		set = append(set,
			sockOpt{"heartbeat_ivl", func() error { return sock.SetHeartbeatIvl(o.HeartbeatInterval) }},
			sockOpt{"heartbeat_timeout", func() error { return sock.SetHeartbeatTimeout(3 * o.HeartbeatInterval) }})
	}
	if o.TCPKeepalive {
		set = append(set, sockOpt{"tcp_keepalive", func() error { return sock.SetTcpKeepalive(1) }})
	}
	for _, opt := range set {
		if err := opt.set(); err != nil {
			return nil, fmt.Errorf("%v socket for %s: set %s: %w", t, strings.Join(endpoints, ","), opt.name, err)
		}
	}
	return sock, nil
}

// bind binds every endpoint and remembers each as libzmq resolved it:
// libzmq knows "tcp://*:2003" only as "tcp://0.0.0.0:2003" (or "tcp://[::]:2003"),
// and Unbind takes only the resolved form.
func (s *Sockets) bind(sock *zmq.Socket, endpoints []string) error {
	for _, ep := range endpoints {
		if err := s.bindOne(sock, ep); err != nil {
			return err
		}
		resolved, err := sock.GetLastEndpoint()
		if err != nil {
			return fmt.Errorf("bind %s: read back the bound address: %w", ep, err)
		}
		s.bound[sock] = append(s.bound[sock], resolved)
	}
	return nil
}

// bindOne binds ep, on the inherited listening socket if there is one. libzmq
// keeps ZMQ_USE_FD for every later bind, so it is reset right after.
func (s *Sockets) bindOne(sock *zmq.Socket, ep string) error {
	fd, ok := s.inherited[ep]
	if !ok {
		if err := sock.Bind(ep); err != nil {
			return fmt.Errorf("bind %s: %w", ep, err)
		}
		return nil
	}
	if err := sock.SetUseFd(fd); err != nil {
		return fmt.Errorf("adopt inherited fd %d for %s: %w", fd, ep, err)
	}
	err := sock.Bind(ep)
	if rerr := sock.SetUseFd(-1); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("bind %s on inherited fd %d: %w", ep, fd, err)
	}
	return nil
}

func (s *Sockets) addSource(sock *zmq.Socket, kind C.int, endpoints []string) error {
	if err := s.bind(sock, endpoints); err != nil {
		return err
	}
	if C.fwd_add_source(s.fwd, rawSocket(sock), kind) != 0 {
		return errors.New("too many inbound sockets")
	}
	s.inbound = append(s.inbound, sock)
	return nil
}

// rawSocket returns libzmq's socket handle behind a pebbe socket. pebbe keeps
// it in the first, unexported field of Socket; verifyRawSocket checks the
// assumption against libzmq itself for every socket we create, so a pebbe
// release that changes the layout fails at start, loudly, not at run time.
func rawSocket(s *zmq.Socket) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(s))
}

func verifyRawSocket(s *zmq.Socket, want zmq.Type) error {
	if got := C.socket_type(rawSocket(s)); zmq.Type(got) != want {
		return fmt.Errorf("pebbe/zmq4 socket layout changed: raw handle reports type %d, want %v", int(got), want)
	}
	return nil
}

// SetReason registers the reply text a confirming client gets for a drop code.
func (s *Sockets) SetReason(code int, text string) {
	cs := C.CString(text)
	defer C.free(unsafe.Pointer(cs))
	C.fwd_set_reason(s.fwd, C.int(Drop+code), cs)
	if g := s.goIn; g != nil && Drop+code >= 0 && Drop+code < len(g.reasons) {
		g.reasons[Drop+code] = []byte(text)
	}
}

// ErrClosed is returned by Recv once the sockets are closed.
var ErrClosed = errors.New("sockets closed")

// Recv receives a batch of messages, waiting at most timeout for the first,
// and returns how many arrived. They stay valid until Flush.
func (s *Sockets) Recv(timeout time.Duration) (int, error) {
	if s.goIn != nil && s.goIn.take(s.fwd) > 0 {
		timeout = 0 // add what libzmq's sockets have, without waiting
	}
	n, err := C.fwd_recv(s.fwd, C.int(timeout.Milliseconds()))
	if n == 0 && s.goIn != nil { // woken by the Go listener
		n = C.int(s.goIn.take(s.fwd))
	}
	if n < 0 {
		if errors.Is(err, syscall.Errno(C.ETERM)) || s.closed.Load() {
			return 0, ErrClosed
		}
		if errors.Is(err, syscall.EINTR) { // a signal: an empty batch
			return 0, nil
		}
		return 0, fmt.Errorf("receive: %w", err)
	}
	return int(n), nil
}

// Message is a zero-copy view of one received message. Topic and Body point
// into libzmq's buffers and are valid only until Flush.
type Message struct {
	Source Source
	Frames int
	Size   int // all frames, in bytes
	Topic  []byte
	Body   []byte
}

// Message returns the i-th message of the current batch.
func (s *Sockets) Message(i int) Message {
	f := s.fwd
	return Message{
		Source: Source(f.kind[f.src[i]]),
		Frames: int(f.frames[i]),
		Size:   int(f.size[i]),
		Topic:  unsafe.Slice((*byte)(f.topic_data[i]), int(f.topic_len[i])),
		Body:   unsafe.Slice((*byte)(f.body_data[i]), int(f.body_len[i])),
	}
}

// SetVerdict marks message i to be sent (Send) or dropped (Drop+reason code).
func (s *Sockets) SetVerdict(i, verdict int) { s.fwd.verdict[i] = C.int(verdict) }

// ReplaceBody makes message i go out with body instead of what arrived.
func (s *Sockets) ReplaceBody(i int, body []byte) error {
	var p unsafe.Pointer
	if len(body) > 0 {
		p = unsafe.Pointer(&body[0])
	}
	if C.fwd_replace_body(s.fwd, C.int(i), p, C.size_t(len(body))) != 0 {
		return errors.New("replace body: out of memory")
	}
	return nil
}

// Subscriptions reads the outbound peers' pending (un)subscriptions, waiting
// at most timeout for one, and returns how many subscriptions they hold: a
// listener subscribed to "" holds one. Recv reads them too, once per batch.
func (s *Sockets) Subscriptions(timeout time.Duration) int {
	if s.goOut != nil {
		C.fwd_subscriptions(s.fwd, 0) // the inbound sockets' commands, as below
		return s.goOut.srv.Subscriptions(timeout)
	}
	return int(C.fwd_subscriptions(s.fwd, C.int(timeout.Milliseconds())))
}

// Flush sends the batch's accepted messages, answers confirming clients and
// releases the rest. It returns how many were sent and how many sends failed.
func (s *Sockets) Flush() (sent int, failed int) {
	if s.goOut != nil {
		s.goOut.publish(s)
	}
	sent = int(C.fwd_flush(s.fwd))
	if s.goIn != nil {
		s.goIn.reply(s.fwd)
	}
	failed = int(s.fwd.send_errors)
	s.fwd.send_errors = 0
	return sent, failed
}

// StopInbound unbinds every inbound endpoint, which also closes the
// connections accepted on it, so that no new message arrives; what is
// already queued can still be received. It unbinds every endpoint it can
// and reports those it could not, which keep accepting producers.
func (s *Sockets) StopInbound() error {
	if s.goIn != nil {
		s.goIn.stop()
	}
	var errs []error
	for _, sock := range s.inbound {
		errs = append(errs, s.unbindAll(sock))
	}
	return errors.Join(errs...)
}

// NewInjector returns a socket that other goroutines use, one at a time, to
// push messages into the relay as if they had arrived inbound. The sockets
// must have been opened with Options.Inject.
func (s *Sockets) NewInjector() (*zmq.Socket, error) {
	push, err := s.ctx.NewSocket(zmq.PUSH)
	if err != nil {
		return nil, fmt.Errorf("inject socket: %w", err)
	}
	if err := push.Connect(injectEndpoint); err != nil {
		push.Close()
		return nil, fmt.Errorf("connect %s: %w", injectEndpoint, err)
	}
	return push, nil
}

// SetLinger changes how long Close waits for queued output, so a relay that
// spent part of its drain_timeout draining waits only for the rest.
func (s *Sockets) SetLinger(d time.Duration) error {
	if s.goOut != nil {
		s.goOut.linger.Store(int64(d))
	}
	var errs []error
	for sock := range s.bound {
		errs = append(errs, sock.SetLinger(d))
	}
	return errors.Join(errs...)
}

// Close closes every socket (the PUB socket lingers for Options.Linger to
// deliver what is queued) and terminates the context.
func (s *Sockets) Close() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	for _, m := range s.monitor {
		m.stop()
	}
	lingered := make(chan struct{})
	go func() { // beside libzmq's lingering sockets, not after them
		defer close(lingered)
		if s.goOut != nil {
			s.goOut.close()
		}
	}()
	defer func() { <-lingered }()
	for sock := range s.bound {
		sock.Close()
	}
	if s.goIn != nil {
		s.goIn.close()
	}
	if s.fwd != nil {
		C.fwd_free(s.fwd)
		s.fwd = nil
	}
	s.ctx.Term()
}
