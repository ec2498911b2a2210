package transport

/*
#include "forward.h"
*/
import "C"

import (
	"sync/atomic"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/outbound"
)

// goOutbound publishes the loop's batches from Go (internal/outbound).
type goOutbound struct {
	srv    *outbound.Server
	linger atomic.Int64 // time.Duration Close waits for queued output

	topics, bodies [MaxBatch][]byte
}

func openGoOutbound(o Options) (*goOutbound, error) {
	srv, err := outbound.Listen(outbound.Options{
		Endpoints: o.Outbound, Inherited: o.Inherited, IPv6: o.IPv6,
		Budget: o.Budget, MaxMessageBytes: o.MaxMessageBytes, HWM: o.OutboundHWM,
		MaxConnections: o.MaxOutboundConnections, HandshakeTimeout: o.HandshakeTimeout,
		HeartbeatInterval: o.HeartbeatInterval, TCPKeepalive: o.TCPKeepalive,
		Event: o.OutboundEvent,
	})
	if err != nil {
		return nil, err
	}
	g := &goOutbound{srv: srv}
	g.linger.Store(int64(o.Linger))
	return g, nil
}

// publish hands the batch's accepted messages to the publisher in one call,
// which copies them: fwd_flush frees libzmq's buffers next.
func (g *goOutbound) publish(s *Sockets) {
	f, n := s.fwd, 0
	for i := range int(f.n) {
		if v := int(f.verdict[i]); v == Send || v == sendReplaced {
			m := s.Message(i)
			g.topics[n], g.bodies[n] = m.Topic, m.Body
			n++
		}
	}
	g.srv.Publish(g.topics[:n], g.bodies[:n])
	clear(g.topics[:n])
	clear(g.bodies[:n])
}

func (g *goOutbound) close() { g.srv.Close(time.Duration(g.linger.Load())) }

// Outbound is the Go engine's publisher, for its per-subscriber metrics;
// nil with libzmq's XPUB.
func (s *Sockets) Outbound() *outbound.Server {
	if s.goOut == nil {
		return nil
	}
	return s.goOut.srv
}
