package relay

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/inbound"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/outbound"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
	"github.com/fedora-infra/fedmsg-relay/internal/wire"
)

func sourceName(s transport.Source) string {
	switch s {
	case transport.FromRouter:
		return "confirm"
	case transport.FromInject:
		return "inject"
	}
	return "inbound"
}

const numSources = 3

// batchCounts accumulates one batch's counters on the stack.
type batchCounts struct {
	received      [numSources]uint64
	receivedBytes uint64
	relayed       uint64
	relayedBytes  uint64
	sendErrors    uint64
	dropped       [wire.NumReasons]uint64
}

// stats are the relay's metrics.
type stats struct {
	received      [numSources]*metrics.Counter
	receivedBytes *metrics.Counter
	relayed       *metrics.Counter
	relayedBytes  *metrics.Counter
	sendErrors    *metrics.Counter
	dropped       map[wire.Reason]*metrics.Counter

	connections       map[transport.Side]*metrics.Gauge
	accepted          map[transport.Side]*metrics.Counter
	handshakeFailures map[transport.Side]*metrics.Counter
	acceptFailures    map[transport.Side]*metrics.Counter
	disconnects       map[string]*metrics.Counter // the Go engines', by reason
	repliesDropped    map[string]*metrics.Counter // the Go engine's confirm replies not sent, by reason
}

func newStats(reg *metrics.Registry) *stats {
	s := &stats{
		receivedBytes:     reg.Counter("fedmsg_relay_received_bytes_total", "Bytes of all frames received."),
		relayed:           reg.Counter("fedmsg_relay_relayed_total", "Messages published on the outbound socket."),
		relayedBytes:      reg.Counter("fedmsg_relay_relayed_bytes_total", "Bytes of all frames published."),
		sendErrors:        reg.Counter("fedmsg_relay_send_errors_total", "Messages accepted but not published because the send failed."),
		dropped:           map[wire.Reason]*metrics.Counter{},
		connections:       map[transport.Side]*metrics.Gauge{},
		accepted:          map[transport.Side]*metrics.Counter{},
		handshakeFailures: map[transport.Side]*metrics.Counter{},
		acceptFailures:    map[transport.Side]*metrics.Counter{},
		disconnects:       map[string]*metrics.Counter{},
		repliesDropped:    map[string]*metrics.Counter{},
	}
	for _, reason := range append(inbound.Reasons(), outbound.Reasons()...) {
		s.disconnects[reason] = reg.Counter("fedmsg_relay_disconnects_total",
			"Connections ended, by reason (the Go engines: producers and confirming clients inbound, subscribers outbound).", "reason", reason)
	}
	for _, reason := range []string{inbound.ReasonPeerClosed, inbound.ReasonStalled} {
		s.repliesDropped[reason] = reg.Counter("fedmsg_relay_confirm_replies_dropped_total",
			"Confirm replies not sent: the client had left (peer_closed) or did not read them (reply_stalled; Go inbound engine).", "reason", reason)
	}
	for src := transport.Source(0); src < numSources; src++ {
		s.received[src] = reg.Counter("fedmsg_relay_received_total", "Messages received, by inbound socket.", "source", sourceName(src))
	}
	for _, r := range wire.Reasons() {
		s.dropped[r] = reg.Counter("fedmsg_relay_dropped_total", "Messages dropped, by reason.", "reason", r.String())
	}
	for _, side := range []transport.Side{transport.SideInbound, transport.SideConfirm, transport.SideOutbound} {
		l := []string{"side", string(side)}
		s.connections[side] = reg.Gauge("fedmsg_relay_connections", "Open connections (outbound: subscribers).", l...)
		s.accepted[side] = reg.Counter("fedmsg_relay_connections_accepted_total", "Connections accepted.", l...)
		s.handshakeFailures[side] = reg.Counter("fedmsg_relay_handshake_failures_total", "Connections closed during the ZMTP handshake (garbage, wrong socket type, timeout).", l...)
		s.acceptFailures[side] = reg.Counter("fedmsg_relay_accept_failures_total", "Failed accepts (usually file descriptors exhausted).", l...)
	}
	return s
}

func (s *stats) add(b *batchCounts) {
	for src, n := range b.received {
		if n > 0 {
			s.received[src].Add(n)
		}
	}
	s.receivedBytes.Add(b.receivedBytes)
	s.relayed.Add(b.relayed)
	s.relayedBytes.Add(b.relayedBytes)
	if b.sendErrors > 0 {
		s.sendErrors.Add(b.sendErrors)
	}
	for r, n := range b.dropped {
		if n > 0 {
			s.dropped[wire.Reason(r)].Add(n)
		}
	}
}

// connEvent counts libzmq socket monitor events.
func (s *stats) connEvent(ev transport.ConnEvent) {
	switch ev.Kind() {
	case transport.Accepted:
		s.accepted[ev.Side].Inc()
		s.connections[ev.Side].Add(1)
	case transport.Disconnected:
		s.connections[ev.Side].Add(-1)
	case transport.AcceptFailed:
		s.acceptFailures[ev.Side].Inc()
	case transport.HandshakeFailed:
		s.handshakeFailures[ev.Side].Inc()
	}
}

// inboundEvent counts the Go inbound engine's connection events.
func (s *stats) inboundEvent(ev inbound.Event) {
	side := transport.SideInbound
	if ev.Confirm {
		side = transport.SideConfirm
	}
	s.engineEvent(side, ev)
}

// outboundEvent counts the Go outbound engine's subscriber events.
func (s *stats) outboundEvent(ev outbound.Event) { s.engineEvent(transport.SideOutbound, ev) }

// engineEvent counts a Go engine's connection events as the libzmq
// monitor's are counted, and every end by its reason.
func (s *stats) engineEvent(side transport.Side, ev endpoint.Event) {
	switch ev.Kind {
	case endpoint.Accepted:
		s.accepted[side].Inc()
		s.connections[side].Add(1)
	case endpoint.HandshakeFailed:
		s.handshakeFailures[side].Inc()
	case endpoint.Disconnected:
		s.connections[side].Add(-1)
		s.disconnects[ev.Reason].Inc()
	case endpoint.ReplyDropped:
		s.repliesDropped[ev.Reason].Inc()
	}
}

// registerSubscribers adds the Go outbound engine's drop counters and its
// per-subscriber series, which go when the subscriber does (at most
// max_outbound_connections of them).
func registerSubscribers(reg *metrics.Registry, out *outbound.Server) {
	for i, reason := range outbound.DropReasons() {
		reg.CounterFunc("fedmsg_relay_outbound_dropped_total",
			"Messages not delivered to a subscriber, summed over subscribers, by reason (Go outbound engine).",
			func() float64 { return float64(out.Dropped()[i]) }, "reason", reason)
	}
	perPeer := func(value func(outbound.SubscriberStats) float64) func() []metrics.Sample {
		return func() []metrics.Sample {
			subs := out.Subscribers()
			samples := make([]metrics.Sample, len(subs))
			for i, st := range subs {
				samples[i] = metrics.Sample{Labels: []string{"peer", st.Peer}, Value: value(st)}
			}
			return samples
		}
	}
	reg.Collect("fedmsg_relay_subscriber_sent_total", "Messages written to each connected subscriber (Go outbound engine).", true,
		perPeer(func(st outbound.SubscriberStats) float64 { return float64(st.Sent) }))
	reg.Collect("fedmsg_relay_subscriber_dropped_total", "Messages each connected subscriber lost (Go outbound engine).", true,
		perPeer(func(st outbound.SubscriberStats) float64 { return float64(st.Dropped) }))
	reg.Collect("fedmsg_relay_subscriber_queued_bytes", "Bytes queued for each connected subscriber, as charged to the byte budget (Go outbound engine).", false,
		perPeer(func(st outbound.SubscriberStats) float64 { return float64(st.QueuedBytes) }))
}

// logLimit lets one log line per key through per interval and counts the
// rest: the original relay flooded its log under bad input.
type logLimit[K comparable] struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[K]time.Time
	skipped  map[K]int
}

func newLogLimit[K comparable](interval time.Duration) *logLimit[K] {
	return &logLimit[K]{interval: interval, last: map[K]time.Time{}, skipped: map[K]int{}}
}

// allow reports whether key may be logged now and how many were not since.
func (l *logLimit[K]) allow(key K) (bool, int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last[key]) < l.interval {
		l.skipped[key]++
		return false, 0
	}
	skipped := l.skipped[key]
	l.last[key], l.skipped[key] = now, 0
	return true, skipped
}

// dropLogger logs drops at most once per interval and reason, with the
// number suppressed since.
type dropLogger struct {
	log   hclog.Logger
	limit *logLimit[wire.Reason]
}

func newDropLogger(log hclog.Logger, interval time.Duration) *dropLogger {
	return &dropLogger{log: log, limit: newLogLimit[wire.Reason](interval)}
}

// note logs one dropped message unless its reason was logged within the
// interval; err, if any, says why verification or signing failed.
func (d *dropLogger) note(r wire.Reason, m transport.Message, err error) {
	ok, skipped := d.limit.allow(r)
	if !ok {
		return
	}
	args := append([]any{"reason", r.String()}, describe(m)...)
	if err != nil {
		args = append(args, "error", err)
	}
	if skipped > 0 {
		args = append(args, "similar_drops_not_logged", skipped)
	}
	d.log.Warn("dropped message", args...)
}

// disconnectLogger logs the Go inbound engine's cutting off of producers
// and confirming clients, at most once per interval, reason and side.
// Peers that leave on their own, and the relay's own shutdown, are only
// counted.
type disconnectLogger struct {
	log   hclog.Logger
	limit *logLimit[disconnectKey]
}

type disconnectKey struct {
	reason  string
	confirm bool
}

func newDisconnectLogger(log hclog.Logger, interval time.Duration) *disconnectLogger {
	return &disconnectLogger{log: log, limit: newLogLimit[disconnectKey](interval)}
}

func (d *disconnectLogger) note(ev inbound.Event) {
	if ev.Kind != endpoint.Disconnected || ev.Reason == inbound.ReasonPeerClosed || ev.Reason == inbound.ReasonShutdown {
		return
	}
	ok, skipped := d.limit.allow(disconnectKey{ev.Reason, ev.Confirm})
	if !ok {
		return
	}
	args := []any{"reason", ev.Reason}
	if skipped > 0 {
		args = append(args, "similar_disconnects_not_logged", skipped)
	}
	what := "inbound producer disconnected"
	if ev.Confirm {
		what = "confirming client disconnected"
	}
	d.log.Warn(what, args...)
}

// subscriberLeft is the limiter key of subscribers that leave with drops.
const subscriberLeft = "left_with_drops"

// noteOutbound logs the Go outbound engine's cutting off of subscribers, at
// most once per interval and reason, naming the peer; and a subscriber
// that leaves having lost messages, with what it was sent and lost.
func (d *disconnectLogger) noteOutbound(ev outbound.Event) {
	if ev.Kind != endpoint.Disconnected {
		return
	}
	if ev.Reason != outbound.ReasonPeerClosed && ev.Reason != outbound.ReasonShutdown {
		if ok, skipped := d.limit.allow(disconnectKey{reason: "outbound:" + ev.Reason}); ok {
			args := []any{"reason", ev.Reason, "peer", ev.Peer, "sent", ev.Sent, "dropped", ev.Dropped}
			if skipped > 0 {
				args = append(args, "similar_disconnects_not_logged", skipped)
			}
			d.log.Warn("subscriber disconnected", args...)
		}
		return
	}
	if ev.Dropped == 0 {
		return
	}
	if ok, skipped := d.limit.allow(disconnectKey{reason: subscriberLeft}); ok {
		args := []any{"peer", ev.Peer, "reason", ev.Reason, "sent", ev.Sent, "dropped", ev.Dropped}
		if skipped > 0 {
			args = append(args, "similar_not_logged", skipped)
		}
		d.log.Info("subscriber left having lost messages", args...)
	}
}
