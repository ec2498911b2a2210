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

// Inbound engines.
const (
	EngineGo     = "go"     // inbound ZMTP terminated in Go (internal/inbound), one byte budget
	EngineLibzmq = "libzmq" // a libzmq SUB socket
)

// maxTakeBytes bounds the bytes of one batch taken from the Go listener: they
// are copied into libzmq messages and so held twice until the batch is sent.
const maxTakeBytes = 4 << 20

// goInbound feeds the forwarding loop from the Go listener: messages are
// taken in batches and copied into the loop's zmq_msg_t slots in one cgo
// call, through one contiguous buffer (Go memory may not hold pointers C keeps).
type goInbound struct {
	srv    *inbound.Server
	wake   int   // eventfd the listener signals and the loop's poll(2) waits on
	source C.int // the loop's source index for these messages

	msgs              [MaxBatch]inbound.Message
	data              []byte
	topicLen, bodyLen [MaxBatch]C.size_t
	frames            [MaxBatch]C.int
	size              [MaxBatch]C.size_t
}

// openGoInbound listens on o.Inbound in Go and registers it with the loop.
func (s *Sockets) openGoInbound(o Options) error {
	fd, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return fmt.Errorf("inbound eventfd: %w", errno)
	}
	g := &goInbound{wake: int(fd)}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	srv, err := inbound.Listen(inbound.Options{
		Endpoints: o.Inbound, Inherited: o.Inherited, IPv6: o.IPv6,
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
	if g.source < 0 {
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
		g.data = append(append(g.data, m.Topic...), m.Body...)
		g.topicLen[i], g.bodyLen[i] = C.size_t(len(m.Topic)), C.size_t(len(m.Body))
		g.frames[i], g.size[i] = C.int(m.Frames), C.size_t(m.Size)
	}
	var data *C.char
	if len(g.data) > 0 {
		data = (*C.char)(unsafe.Pointer(&g.data[0]))
	}
	stored := int(C.fwd_put(f, g.source, C.int(k), data, &g.topicLen[0], &g.bodyLen[0], &g.frames[0], &g.size[0]))
	g.srv.Release(g.msgs[:k])
	if len(g.data) > maxTakeBytes { // a batch of huge messages: do not keep their buffer
		g.data = nil
	}
	return stored
}

// stop closes the listeners and connections; what was queued can still be taken.
func (g *goInbound) stop() { g.srv.Stop() }

func (g *goInbound) close() {
	g.srv.Stop()
	syscall.Close(g.wake)
}
