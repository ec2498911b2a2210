package amqpbridge

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestFaultTolerance streams 50,000 messages through the bridge while the
// broker is stopped for several seconds and restarted (same node and mnesia
// dir), and while the bridge itself is closed and reopened on the same spool
// dir. No message may be lost; duplicates are allowed and reported.
func TestFaultTolerance(t *testing.T) {
	b := requireBroker(t)
	const total = 50000
	tests := []struct {
		name string
		rate int // messages per second the producer streams
		// disrupt runs once a fifth of the stream was published, while the stream goes on.
		disrupt func(t *testing.T, bridges *bridgeSlot)
	}{
		{"broker_restart", 4000, func(t *testing.T, _ *bridgeSlot) { b.restart(t, 3*time.Second) }},
		{"bridge_restart", 10000, func(t *testing.T, bridges *bridgeSlot) { bridges.restart(t) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exchange, queue := testName(t), testName(t)
			declareQueue(t, b.url(), exchange, queue)
			got := startCollector(t, b.url(), queue)
			cfg := testConfig(t, b.url(), exchange)
			cfg.ConfirmTimeout = 5 * time.Second
			bridges := &bridgeSlot{cfg: cfg, current: startBridge(t, cfg, nil)}

			var published atomic.Int64
			streamDone := make(chan struct{})
			go func() {
				defer close(streamDone)
				const batch = 100
				tick := time.NewTicker(time.Second * batch / time.Duration(tt.rate))
				defer tick.Stop()
				for i := 0; i < total; i += batch {
					<-tick.C
					bridges.publish(func(br *runningBridge) {
						for j := i; j < i+batch; j++ {
							id := fmt.Sprintf("2026-%s-%06d", tt.name, j)
							br.publish([]byte("org.fedoraproject.test.fault"), fedmsgBody("org.fedoraproject.test.fault", id, fmt.Sprintf(`{"n": %d}`, j)))
						}
					})
					published.Add(batch)
				}
			}()
			waitFor(t, 30*time.Second, "a fifth of the stream", func() bool { return published.Load() >= total/5 })
			start := time.Now()
			tt.disrupt(t, bridges)
			t.Logf("disruption took %s; %d of %d messages published by then", time.Since(start).Round(time.Millisecond), published.Load(), total)
			<-streamDone

			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				if unique, _ := got.counts(); unique >= total {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			unique, dups := got.counts()
			outOfOrder := got.OrderInversions()
			br := bridges.get()
			t.Logf("%s: sent %d, lost %d, duplicates delivered %d (%d redelivered to the test consumer, %d published again), resent as counted by the last bridge %v, first deliveries out of order %d",
				tt.name, total, total-unique, dups, got.redelivered(), dups-got.redelivered(), br.metric(t, "fedmsg_relay_amqp_duplicates_resent_total"), outOfOrder)
			if unique != total {
				t.Fatalf("lost %d of %d messages", total-unique, total)
			}
		})
	}
}

// bridgeSlot holds the running bridge, which a relay restart replaces.
type bridgeSlot struct {
	mu      sync.Mutex
	cfg     Options
	current *runningBridge
}

func (s *bridgeSlot) publish(fn func(*runningBridge)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.current)
}

func (s *bridgeSlot) get() *runningBridge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// restart stops and closes the bridge and opens a new one on the same spool
// dir, as a relay restart does; the producer waits meanwhile.
func (s *bridgeSlot) restart(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	unconfirmed := s.current.metric(t, "fedmsg_relay_amqp_spool_messages")
	s.current.stop()
	s.current = startBridge(t, s.cfg, nil)
	t.Logf("bridge restarted with %v unconfirmed messages in the spool", unconfirmed)
}

// TestSpoolFull fills a 64 KiB spool while the broker is unreachable: the
// oldest messages are dropped and counted, Publish never waits, and once a
// broker is reachable exactly the newest messages are delivered, in order.
func TestSpoolFull(t *testing.T) {
	b := requireBroker(t)
	exchange, queue := testName(t), testName(t)
	cfg := testConfig(t, deadURL(t), exchange)
	cfg.SpoolMaxBytes = 64 << 10 // the smallest the configuration allows
	down := startBridge(t, cfg, nil)

	const total = 20000
	latencies := make([]time.Duration, total)
	for i := range total {
		body := fedmsgBody("t.full", fmt.Sprintf("2026-full-%06d", i), fmt.Sprintf(`{"n": %d, "pad": "%0200d"}`, i, 0))
		start := time.Now()
		down.publish([]byte("t.full"), body)
		latencies[i] = time.Since(start)
	}
	waitFor(t, 10*time.Second, "the spool writer", func() bool {
		return down.metric(t, "fedmsg_relay_amqp_spooled_total") == total
	})
	dropped := down.metric(t, `fedmsg_relay_amqp_dropped_total{reason="spool_full"}`)
	kept := down.metric(t, "fedmsg_relay_amqp_spool_messages")
	bytes := down.metric(t, "fedmsg_relay_amqp_spool_bytes")
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	t.Logf("broker down: Publish latency p50 %s, p99 %s, p99.9 %s, max %s; dropped %v, kept %v (%v bytes of %d)",
		latencies[total/2], latencies[total*99/100], latencies[total*999/1000], latencies[total-1], dropped, kept, bytes, cfg.SpoolMaxBytes)
	if dropped == 0 || dropped+kept != total || bytes > float64(cfg.SpoolMaxBytes) {
		t.Fatalf("dropped %v + kept %v != %d, or spool %v bytes over %d", dropped, kept, total, bytes, cfg.SpoolMaxBytes)
	}
	// A broker attempt on this path would take the dial or reconnect time.
	if latencies[total-1] > time.Second {
		t.Errorf("Publish took %s with the broker down", latencies[total-1])
	}
	down.stop()

	declareQueue(t, b.url(), exchange, queue)
	got := startCollector(t, b.url(), queue)
	cfg.URL = b.url()
	startBridge(t, cfg, nil)
	waitFor(t, 20*time.Second, "the kept messages", func() bool {
		unique, _ := got.counts()
		return unique >= int(kept)
	})
	for i, d := range got.snapshot() {
		if want := fmt.Sprintf("2026-full-%06d", total-int(kept)+i); d.MessageId != want {
			t.Fatalf("delivery %d: message id %s, want %s (the newest %v, in order)", i, d.MessageId, want, kept)
		}
	}
}

// TestNackResend makes the broker nack (a queue limited to 10 messages that
// rejects publishes when full) and checks that the bridge republishes from
// the oldest unconfirmed message, in order, until every message is taken.
func TestNackResend(t *testing.T) {
	b := requireBroker(t)
	exchange, queue := testName(t), testName(t)
	withChannel(t, b.url(), func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return err
		}
		args := amqp.Table{"x-max-length": int32(10), "x-overflow": "reject-publish"}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
			return err
		}
		return ch.QueueBind(queue, "#", exchange, false, nil)
	})
	bridge := startBridge(t, testConfig(t, b.url(), exchange), nil)
	const total = 50
	for i := range total {
		bridge.publish([]byte("t.nack"), fedmsgBody("t.nack", fmt.Sprintf("2026-nack-%03d", i), `{}`))
	}
	waitFor(t, 10*time.Second, "a nack and a reconnect", func() bool {
		return bridge.metric(t, "fedmsg_relay_amqp_nacked_total") >= 1 &&
			bridge.metric(t, `fedmsg_relay_amqp_reconnects_total{direction="publish"}`) >= 1
	})
	got := startCollector(t, b.url(), queue) // drains the queue: the resends get in
	waitFor(t, 30*time.Second, "every message", func() bool {
		unique, _ := got.counts()
		return unique == total
	})
	if n := got.OrderInversions(); n != 0 {
		t.Errorf("%d messages arrived before an older one", n)
	}
	t.Logf("nacked %v, resent %v, reconnects %v", bridge.metric(t, "fedmsg_relay_amqp_nacked_total"),
		bridge.metric(t, "fedmsg_relay_amqp_duplicates_resent_total"), bridge.metric(t, `fedmsg_relay_amqp_reconnects_total{direction="publish"}`))
}

// TestConfirmTimeout freezes the broker (SIGSTOP) so confirms stop coming:
// the bridge must give up on the connection after confirm_timeout, reconnect
// once the broker runs again, and lose nothing. With large messages the
// frozen broker's socket fills and the publisher is stuck in a write, which
// must time out as well (the heartbeat is set too long to rescue it).
func TestConfirmTimeout(t *testing.T) {
	for _, tt := range []struct {
		name     string
		total    int
		msgBytes int
	}{
		{"small messages", 100, 0},
		{"socket full", 200, 256 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) { testConfirmTimeout(t, tt.total, tt.msgBytes) })
	}
}

func testConfirmTimeout(t *testing.T, total, msgBytes int) {
	b := requireBroker(t)
	exchange, queue := testName(t), testName(t)
	declareQueue(t, b.url(), exchange, queue)
	got := startCollector(t, b.url(), queue)
	cfg := testConfig(t, b.url(), exchange)
	cfg.ConfirmTimeout = time.Second
	cfg.Heartbeat = time.Minute
	bridge := startBridge(t, cfg, nil)
	bridge.waitConnected(t)
	b.freeze(t, true)
	frozen := true
	t.Cleanup(func() {
		if frozen {
			b.freeze(t, false)
		}
	})
	pad := fmt.Sprintf(`{"pad": %q}`, strings.Repeat("x", msgBytes))
	for i := range total {
		bridge.publish([]byte("t.timeout"), fedmsgBody("t.timeout", fmt.Sprintf("2026-timeout-%03d", i), pad))
	}
	waitFor(t, 20*time.Second, "the confirm timeout", func() bool {
		return bridge.metric(t, `fedmsg_relay_amqp_reconnects_total{direction="publish"}`) >= 1
	})
	b.freeze(t, false)
	frozen = false
	waitFor(t, 60*time.Second, "every message", func() bool {
		unique, _ := got.counts()
		return unique == total
	})
}

// TestBrokerBlocked raises a memory alarm so the broker blocks publishers:
// the bridge reports it (metric, log), messages wait in the spool, Publish
// keeps returning, and everything arrives once the alarm clears.
func TestBrokerBlocked(t *testing.T) {
	b := requireBroker(t)
	exchange, queue := testName(t), testName(t)
	declareQueue(t, b.url(), exchange, queue)
	got := startCollector(t, b.url(), queue)
	bridge := startBridge(t, testConfig(t, b.url(), exchange), nil)
	bridge.waitConnected(t)
	b.ctl(t, "set_vm_memory_high_watermark", "0.00001")
	alarm := true
	t.Cleanup(func() {
		if alarm {
			b.ctl(t, "set_vm_memory_high_watermark", "0.4")
		}
	})
	const total = 1000
	for i := range total {
		bridge.publish([]byte("t.blocked"), fedmsgBody("t.blocked", fmt.Sprintf("2026-blocked-%04d", i), `{}`))
	}
	waitFor(t, 20*time.Second, "the blocked notification", func() bool {
		return bridge.metric(t, `fedmsg_relay_amqp_blocked{direction="publish"}`) == 1
	})
	waiting := bridge.metric(t, "fedmsg_relay_amqp_spool_messages")
	b.ctl(t, "set_vm_memory_high_watermark", "0.4")
	alarm = false
	waitFor(t, 30*time.Second, "every message", func() bool {
		unique, _ := got.counts()
		return unique == total
	})
	t.Logf("%v of %d messages were spooled and unconfirmed while the broker blocked the bridge", waiting, total)
	if waiting == 0 {
		t.Errorf("nothing waited in the spool while blocked")
	}
}

// TestSpoolDamagedLength spools messages while the broker is unreachable,
// flips a byte of one record's length (a bad disk) and starts the bridge on
// the spool with the broker up: every other message, those after the
// damaged one in its segment included, is published in order, and the
// damaged one is counted as corrupt.
func TestSpoolDamagedLength(t *testing.T) {
	b := requireBroker(t)
	exchange, queue := testName(t), testName(t)
	cfg := testConfig(t, deadURL(t), exchange)
	down := startBridge(t, cfg, nil)
	const total, damaged = 100, 40
	id := func(i int) string { return fmt.Sprintf("2026-damaged-%03d", i) }
	for i := range total {
		down.publish([]byte("t.damaged"), fedmsgBody("t.damaged", id(i), fmt.Sprintf(`{"n": %d, "pad": %q}`, i, strings.Repeat("x", i))))
	}
	waitFor(t, 10*time.Second, "the spool writer", func() bool { return down.metric(t, "fedmsg_relay_amqp_spooled_total") == total })
	down.stop()

	segs, err := filepath.Glob(filepath.Join(cfg.SpoolDir, "*.seg"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("want one segment file, found %v (%v)", segs, err)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for range damaged {
		off += 8 + int(binary.LittleEndian.Uint32(data[off:]))
	}
	data[off+3] ^= 0xff // the length's high byte: far out of range
	if err := os.WriteFile(segs[0], data, 0o640); err != nil {
		t.Fatal(err)
	}

	declareQueue(t, b.url(), exchange, queue)
	got := startCollector(t, b.url(), queue)
	cfg.URL = b.url()
	up := startBridge(t, cfg, nil)
	waitFor(t, 20*time.Second, "every intact message", func() bool {
		unique, _ := got.counts()
		return unique >= total-1
	})
	var ids []string
	for _, d := range got.snapshot() {
		ids = append(ids, d.MessageId)
	}
	var want []string
	for i := range total {
		if i != damaged {
			want = append(want, id(i))
		}
	}
	if !slices.Equal(ids, want) {
		t.Errorf("published %v, want every message but %s, in order", ids, id(damaged))
	}
	if n := up.metric(t, `fedmsg_relay_amqp_dropped_total{reason="corrupt"}`); n != 1 {
		t.Errorf("%v counted corrupt, want 1", n)
	}
}
