package transport

/*
#include "forward.h"
*/
import "C"

import (
	"fmt"
	"syscall"
	"unsafe"

	"github.com/fedora-infra/fedmsg-relay/internal/inbound"
)

// Engines, inbound and outbound.
const (
	EngineGo     = "go"     // ZMTP terminated in Go (internal/inbound, internal/outbound), one byte budget
	EngineLibzmq = "libzmq" // a libzmq SUB or XPUB socket
)

// maxTakeBytes bounds the bytes of one batch taken from the Go listener: they
// are copied into libzmq messages and so held twice until the batch is sent.
const maxTakeBytes = 4 << 20

// goInbound feeds the forwarding loop from the Go listener: messages are
// taken in batches and copied into the loop's zmq_msg_t slots in one cgo
// call, through one contiguous buffer (Go memory may not hold pointers C keeps).
// Confirming clients' messages enter the loop as a ROUTER's would; once the
// batch is flushed, each is answered from its verdict, by Go.
type goInbound struct {
	srv           *inbound.Server
	wake          int   // eventfd the listener signals and the loop's poll(2) waits on
	source        C.int // the loop's source index for producers' messages
	confirmSource C.int // and for confirming clients', -1 without confirm endpoints

	msgs              [MaxBatch]inbound.Message
	data              []byte
	src               [MaxBatch]C.int
	topicLen, bodyLen [MaxBatch]C.size_t
	frames            [MaxBatch]C.int
	size              [MaxBatch]C.size_t

	// The batch's confirm messages: their slot in the loop's batch and
	// whom to answer.
	replies    [MaxBatch]pendingReply
	numReplies int
	// reasons are the reply texts by verdict (SetReason); replaced, never
	// changed, since Reply keeps them.
	reasons [C.FWD_MAX_REASONS][]byte
	// While holding, reply appends the replies to held instead of sending
	// them (FlushHoldingReplies).
	holding bool
	held    []Reply
}

// Reply is the answer to one confirming client's message of a flushed
// batch (Go engine), held to be sent later with SendReplies.
type Reply struct {
	to inbound.ReplyTo
	// Text is the reply, a constant that is kept, never copied.
	Text []byte
	// Published says the message went out on the bus (Text is "ok").
	Published bool
}

type pendingReply struct {
	slot int
	to   inbound.ReplyTo
}

// Reply texts that are not drop reasons, as forward.c's reply() sends them.
var (
	replyOK      = []byte("ok")
	replySend    = []byte("refused:send")
	replyUnknown = []byte("refused:unknown")
)

// openGoInbound listens on o.Inbound and o.Confirm in Go and registers them
// with the loop.
func (s *Sockets) openGoInbound(o Options) error {
	fd, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return fmt.Errorf("inbound eventfd: %w", errno)
	}
	g := &goInbound{wake: int(fd), confirmSource: -1}
	for i := range g.reasons {
		g.reasons[i] = replyUnknown
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	srv, err := inbound.Listen(inbound.Options{
		Endpoints: o.Inbound, ConfirmEndpoints: o.Confirm, Inherited: o.Inherited, IPv6: o.IPv6,
		MaxMessageBytes: o.MaxMessageBytes, Budget: o.Budget, MaxConnections: o.MaxInboundConnections,
		HandshakeTimeout: o.HandshakeTimeout, HeartbeatInterval: o.HeartbeatInterval, TCPKeepalive: o.TCPKeepalive,
		Notify: func() { syscall.Write(g.wake, one) },
		Event:  o.InboundEvent,
	})
	if err != nil {
		syscall.Close(g.wake)
		return err
	}
	g.srv = srv
	g.source = C.fwd_add_fed_source(s.fwd, C.int(g.wake), C.FWD_SUB)
	if len(o.Confirm) > 0 && g.source >= 0 {
		g.confirmSource = C.fwd_add_fed_source(s.fwd, -1, C.FWD_ROUTER) // woken by the same eventfd
	}
	if g.source < 0 || len(o.Confirm) > 0 && g.confirmSource < 0 {
		srv.Stop()
		syscall.Close(g.wake)
		return fmt.Errorf("too many inbound sockets")
	}
	s.goIn = g
	return nil
}

// take moves what the listener queued into the loop's batch and returns how
// many messages it stored.
func (g *goInbound) take(f *C.fwd_t) int {
	room := MaxBatch - int(f.n)
	if room <= 0 {
		return 0
	}
	k := g.srv.Take(g.msgs[:room], maxTakeBytes)
	if k == 0 {
		return 0
	}
	g.data = g.data[:0]
	for i, m := range g.msgs[:k] {
		g.src[i] = g.source
		if _, ok := m.ReplyTo(); ok {
			g.src[i] = g.confirmSource
		}
		g.data = append(append(g.data, m.Topic...), m.Body...)
		g.topicLen[i], g.bodyLen[i] = C.size_t(len(m.Topic)), C.size_t(len(m.Body))
		g.frames[i], g.size[i] = C.int(m.Frames), C.size_t(m.Size)
	}
	var data *C.char
	if len(g.data) > 0 {
		data = (*C.char)(unsafe.Pointer(&g.data[0]))
	}
	first := int(f.n)
	stored := int(C.fwd_put(f, C.int(k), &g.src[0], data, &g.topicLen[0], &g.bodyLen[0], &g.frames[0], &g.size[0]))
	for i := range g.msgs[:stored] {
		if to, ok := g.msgs[i].ReplyTo(); ok {
			g.replies[g.numReplies] = pendingReply{first + i, to}
			g.numReplies++
		}
	}
	g.srv.Release(g.msgs[:k])
	if len(g.data) > maxTakeBytes { // a batch of huge messages: do not keep their buffer
		g.data = nil
	}
	return stored
}

// reply answers the confirm messages of the batch fwd_flush just sent,
// from the verdicts it left.
func (g *goInbound) reply(f *C.fwd_t) {
	for i := range g.replies[:g.numReplies] {
		p := &g.replies[i]
		text, published := replyUnknown, false
		switch v := int(f.verdict[p.slot]); {
		case v == C.FWD_SEND || v == C.FWD_SEND_REPLACED:
			text, published = replyOK, true
		case v == C.FWD_SEND_FAILED:
			text = replySend
		case v < len(g.reasons):
			text = g.reasons[v]
		}
		if g.holding {
			g.held = append(g.held, Reply{to: p.to, Text: text, Published: published})
		} else {
			g.srv.Reply(p.to, text)
		}
		*p = pendingReply{}
	}
	g.numReplies = 0
}

// FlushHoldingReplies is Flush, except that with the Go engine the batch's
// confirm replies are appended to held, and returned, instead of sent: the
// caller sends them with SendReplies once it may answer.
func (s *Sockets) FlushHoldingReplies(held []Reply) (sent, failed int, _ []Reply) {
	g := s.goIn
	if g == nil {
		sent, failed = s.Flush()
		return sent, failed, held
	}
	g.holding, g.held = true, held
	sent, failed = s.Flush()
	held = g.held
	g.holding, g.held = false, nil
	return sent, failed, held
}

// SendReplies queues held replies with their clients, in order, never
// waiting (inbound.Server.Reply). Unlike the batch methods it may be called
// from any goroutine, also after Close (the replies are then dropped).
func (s *Sockets) SendReplies(replies []Reply) {
	for _, r := range replies {
		s.goIn.srv.Reply(r.to, r.Text)
	}
}

// stop closes the listeners and connections; what was queued can still be taken.
func (g *goInbound) stop() { g.srv.Stop() }

func (g *goInbound) close() {
	g.srv.Stop()
	syscall.Close(g.wake)
}
