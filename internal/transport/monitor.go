package transport

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// Side names which socket a connection event belongs to.
type Side string

// Sides with connection monitoring.
const (
	SideInbound  Side = "inbound"
	SideConfirm  Side = "confirm"
	SideOutbound Side = "outbound"
)

// ConnEvent is one libzmq socket monitor event of interest.
type ConnEvent struct {
	Side     Side
	Endpoint string
	Value    int // errno for failures, fd for accepts
	zmqEvent zmq.Event
}

// monitoredEvents are those the relay counts: connections coming and going,
// failed handshakes (garbage, timeouts) and failed accepts (fd exhaustion).
const monitoredEvents = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPT_FAILED |
	zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH

type monitorSocket struct {
	pair *zmq.Socket
	quit atomic.Bool
	done sync.WaitGroup
}

func (m *monitorSocket) stop() {
	m.quit.Store(true)
	m.done.Wait()
}

// Monitor reports connection events of the inbound, confirm and outbound
// sockets to fn, from one goroutine per socket, until Close. Call it before
// the forwarding loop starts.
func (s *Sockets) Monitor(fn func(ConnEvent)) error {
	var sides []struct {
		sock *zmq.Socket
		side Side
	}
	if s.pub != nil { // the Go engine reports its own (Options.OutboundEvent)
		sides = append(sides, struct {
			sock *zmq.Socket
			side Side
		}{s.pub, SideOutbound})
	}
	if s.sub != nil { // the Go engine reports its own (Options.InboundEvent)
		sides = append(sides, struct {
			sock *zmq.Socket
			side Side
		}{s.sub, SideInbound})
	}
	if s.confirm != nil {
		sides = append(sides, struct {
			sock *zmq.Socket
			side Side
		}{s.confirm, SideConfirm})
	}
	for _, sd := range sides {
		addr := fmt.Sprintf("inproc://fedmsg-relay-monitor-%s", sd.side)
		if err := sd.sock.Monitor(addr, monitoredEvents); err != nil {
			return fmt.Errorf("monitor %s socket: %w", sd.side, err)
		}
		pair, err := s.ctx.NewSocket(zmq.PAIR)
		if err != nil {
			return fmt.Errorf("monitor %s socket: %w", sd.side, err)
		}
		if err := pair.Connect(addr); err != nil {
			pair.Close()
			return fmt.Errorf("monitor %s socket: connect %s: %w", sd.side, addr, err)
		}
		// Wake up regularly to notice Close: the pair is only used here.
		if err := pair.SetRcvtimeo(100 * time.Millisecond); err != nil {
			pair.Close()
			return fmt.Errorf("monitor %s socket: %w", sd.side, err)
		}
		m := &monitorSocket{pair: pair}
		s.monitor = append(s.monitor, m)
		m.done.Add(1)
		go func(side Side) {
			defer m.done.Done()
			defer pair.Close()
			for !m.quit.Load() {
				kind, ep, value, err := pair.RecvEvent(0)
				if err != nil {
					continue // timeout: check quit
				}
				fn(ConnEvent{Side: side, Endpoint: ep, Value: value, zmqEvent: kind})
			}
		}(sd.side)
	}
	return nil
}

// EventKind classifies connection events for counting.
type EventKind int

// Connection event kinds.
const (
	Accepted EventKind = iota
	Disconnected
	AcceptFailed
	HandshakeFailed
	OtherEvent
)

// Kind maps the libzmq event to what the relay counts.
func (e ConnEvent) Kind() EventKind {
	switch {
	case e.zmqEvent == zmq.EVENT_ACCEPTED:
		return Accepted
	case e.zmqEvent == zmq.EVENT_DISCONNECTED:
		return Disconnected
	case e.zmqEvent == zmq.EVENT_ACCEPT_FAILED:
		return AcceptFailed
	case e.zmqEvent&(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL|zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL|zmq.EVENT_HANDSHAKE_FAILED_AUTH) != 0:
		return HandshakeFailed
	}
	return OtherEvent
}
