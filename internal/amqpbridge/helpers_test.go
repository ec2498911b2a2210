package amqpbridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/logging"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
)

// testName turns a test name into an exchange/queue name of its own.
func testName(t testing.TB) string {
	return "test." + strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
}

// fedmsgBody returns a fedmsg envelope as the relay would see it.
func fedmsgBody(topic, msgID string, msg string) []byte {
	return fmt.Appendf(nil, `{"topic": %q, "msg": %s, "msg_id": %q, "i": 1, "timestamp": 1700000000, "username": "fedmsg"}`, topic, msg, msgID)
}

// declareQueue declares exchange (topic, durable) and a durable queue bound to
// it with "#", through a connection of the test's own, and empties the queue.
func declareQueue(t testing.TB, url, exchange, queue string) {
	t.Helper()
	withChannel(t, url, func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			return err
		}
		if err := ch.QueueBind(queue, "#", exchange, false, nil); err != nil {
			return err
		}
		_, err := ch.QueuePurge(queue, false)
		return err
	})
}

func withChannel(t testing.TB, url string, fn func(*amqp.Channel) error) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("test connection: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("test channel: %v", err)
	}
	if err := fn(ch); err != nil {
		t.Fatalf("test channel operation: %v", err)
	}
}

// collector consumes a queue (reconnecting across broker restarts) and keeps
// every delivery, acknowledging it once recorded.
type collector struct {
	mu         sync.Mutex
	deliveries []amqp.Delivery
	seen       map[string]int // message id -> times delivered
	cancel     context.CancelFunc
	done       chan struct{}
}

func startCollector(t testing.TB, url, queue string) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{seen: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			c.consume(ctx, url, queue)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *collector) stop() {
	c.cancel()
	<-c.done
}

func (c *collector) consume(ctx context.Context, url, queue string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	if err := ch.Qos(1000, 0, false); err != nil {
		return
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return
	}
	// Acknowledge in batches (multiple) to spare the broker's CPU.
	unacked := 0
	for d := range deliveries {
		c.mu.Lock()
		c.deliveries = append(c.deliveries, d)
		c.seen[d.MessageId]++
		c.mu.Unlock()
		if unacked++; unacked < 200 && len(deliveries) > 0 {
			continue
		}
		if d.Ack(true) != nil {
			return
		}
		unacked = 0
	}
}

// counts returns the number of distinct message ids and of extra deliveries.
func (c *collector) counts() (unique, duplicates int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen), len(c.deliveries) - len(c.seen)
}

// redelivered returns how many deliveries the broker flagged as redelivered:
// duplicates caused by the collector's own connection loss, not by the bridge.
func (c *collector) redelivered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, d := range c.deliveries {
		if d.Redelivered {
			n++
		}
	}
	return n
}

func (c *collector) snapshot() []amqp.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]amqp.Delivery(nil), c.deliveries...)
}

// runningBridge is a Bridge whose Run goroutine the test controls.
type runningBridge struct {
	*Bridge
	reg    *metrics.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

// startBridge creates a bridge and runs it; it is stopped and closed at cleanup.
func startBridge(t testing.TB, cfg Config, inject func(topic, body []byte) error) *runningBridge {
	t.Helper()
	reg := metrics.NewRegistry()
	b, err := New(cfg, logging.ForTest(t), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rb := &runningBridge{Bridge: b, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rb.done)
		if err := b.Run(ctx, inject); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(rb.stop)
	return rb
}

// stop cancels Run, waits for it and closes the bridge (idempotent).
func (rb *runningBridge) stop() {
	rb.cancel()
	<-rb.done
	rb.Close()
}

// metric returns the current value of one series, e.g. `fedmsg_relay_amqp_dropped_total{reason="loop"}`.
func (rb *runningBridge) metric(t testing.TB, series string) float64 {
	t.Helper()
	var out strings.Builder
	if err := rb.reg.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not found in:\n%s", series, out.String())
	return 0
}

// testConfig is a bridge configuration for tests: fast reconnects and a spool
// in the test's temp dir.
func testConfig(t testing.TB, url, exchange string) Config {
	return Config{
		URL:          url,
		Exchange:     exchange,
		SpoolDir:     t.TempDir(),
		ReconnectMin: 50 * time.Millisecond,
		ReconnectMax: 500 * time.Millisecond,
	}
}

// mustJSON decodes a JSON object for comparisons.
func mustJSON(t testing.TB, data []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}
