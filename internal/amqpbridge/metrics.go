package amqpbridge

import (
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/spool"
	"github.com/fedora-infra/fedmsg-relay/internal/wire"
)

// Reasons a message is dropped, the `reason` label of
// fedmsg_relay_amqp_dropped_total, beside the spool's (spool.DropReasons).
const (
	dropLoop     = "loop"    // another relay's AMQP bridge injected it
	dropInvalid  = "invalid" // cannot be expressed as a fedora-messaging message
	dropConsumed = "consume_invalid"
)

var dropReasons = append([]string{dropLoop, dropInvalid, dropConsumed}, spool.DropReasons...)

const (
	directionPublish = "publish"
	directionConsume = "consume"
)

type bridgeMetrics struct {
	published, confirmed, nacked, duplicates, spooled, consumed, injected *metrics.Counter
	reconnects, dropped                                                   map[string]*metrics.Counter
	connected, blocked                                                    map[string]*metrics.Gauge
	reg                                                                   *metrics.Registry
}

func newBridgeMetrics(reg *metrics.Registry) *bridgeMetrics {
	const p = "fedmsg_relay_amqp_"
	m := &bridgeMetrics{
		published:  reg.Counter(p+"published_total", "Messages published to the broker, resends included."),
		confirmed:  reg.Counter(p+"confirmed_total", "Messages the broker confirmed (ack)."),
		nacked:     reg.Counter(p+"nacked_total", "Messages the broker refused (nack); they are resent."),
		duplicates: reg.Counter(p+"duplicates_resent_total", "Messages published again after a nack, timeout or lost connection."),
		spooled:    reg.Counter(p+"spooled_total", "Messages written to the on-disk spool."),
		consumed:   reg.Counter(p+"consumed_total", "Messages received from the consumed queue."),
		injected:   reg.Counter(p+"injected_total", "Consumed messages published into the ZeroMQ bus and acknowledged."),
		reconnects: map[string]*metrics.Counter{},
		connected:  map[string]*metrics.Gauge{},
		blocked:    map[string]*metrics.Gauge{},
		dropped:    map[string]*metrics.Counter{},
		reg:        reg,
	}
	for _, dir := range []string{directionPublish, directionConsume} {
		m.reconnects[dir] = reg.Counter(p+"reconnects_total", "Broker connection attempts after a failure.", "direction", dir)
		m.connected[dir] = reg.Gauge(p+"connected", "1 while connected to the broker.", "direction", dir)
		m.blocked[dir] = reg.Gauge(p+"blocked", "1 while the broker blocks the connection (resource alarm).", "direction", dir)
	}
	for _, r := range dropReasons {
		m.dropped[r] = reg.Counter(p+"dropped_total", "Messages not bridged, by reason.", "reason", r)
	}
	for _, r := range wire.Reasons() {
		m.refused(r.String()) // every reason's series exists from the start
	}
	return m
}

// refused is the counter of consumed messages the relay refused for reason
// (one of its drop reasons); the registry returns a known reason's counter.
func (m *bridgeMetrics) refused(reason string) *metrics.Counter {
	return m.reg.Counter("fedmsg_relay_amqp_consume_refused_total",
		"Consumed messages the relay refused (rejected to the queue's dead-letter exchange), by the relay's drop reason.", "reason", reason)
}

// watchSpool exports the spool's size and backlog.
func (m *bridgeMetrics) watchSpool(reg *metrics.Registry, s *spool.Spool) {
	const p = "fedmsg_relay_amqp_"
	reg.GaugeFunc(p+"spool_bytes", "Size of the on-disk spool.", func() float64 {
		_, bytes := s.State()
		return float64(bytes)
	})
	reg.GaugeFunc(p+"spool_messages", "Messages spooled and not yet confirmed.", func() float64 {
		n, _ := s.State()
		return float64(n)
	})
}

func (m *bridgeMetrics) drop(reason string, n uint64) { m.dropped[reason].Add(n) }
