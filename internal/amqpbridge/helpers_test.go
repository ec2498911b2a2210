package amqpbridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/logging/logtest"
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

var (
	declareQueue = amqptest.DeclareQueue
	withChannel  = amqptest.WithChannel
)

// collector is amqptest.Collector under the names this package's tests use.
type collector struct{ *amqptest.Collector }

func startCollector(t testing.TB, url, queue string) *collector {
	t.Helper()
	return &collector{amqptest.StartCollector(t, url, queue)}
}

func (c *collector) counts() (unique, duplicates int) { return c.Counts() }
func (c *collector) redelivered() int                 { return c.Redelivered() }
func (c *collector) snapshot() []amqp.Delivery        { return c.Snapshot() }

// runningBridge is a Bridge whose Run goroutine the test controls.
type runningBridge struct {
	*Bridge
	reg    *metrics.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

// startBridge creates a bridge and runs it; it is stopped and closed at cleanup.
func startBridge(t testing.TB, cfg Options, inject Inject) *runningBridge {
	t.Helper()
	reg := metrics.NewRegistry()
	b, err := New(cfg, logtest.ForTest(t), reg)
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

// answeredAtOnce is an Inject whose answer is fn's, ready when it returns.
func answeredAtOnce(fn func(topic, body []byte) error) Inject {
	return func(topic, body []byte) <-chan error {
		answer := make(chan error, 1)
		answer <- fn(topic, body)
		return answer
	}
}

// publish enqueues one message, a batch of one from a PUB producer (not
// waited for).
func (rb *runningBridge) publish(topic, body []byte) {
	rb.Enqueue([][]byte{topic}, [][]byte{body}, false)
}

// stop cancels Run, waits for it and closes the bridge (idempotent).
func (rb *runningBridge) stop() {
	rb.cancel()
	<-rb.done
	rb.Close()
}

// waitConnected waits until the publishing side is connected to the broker.
func (rb *runningBridge) waitConnected(t testing.TB) {
	t.Helper()
	waitFor(t, 10*time.Second, "the bridge to connect", func() bool {
		return rb.metric(t, `fedmsg_relay_amqp_connected{direction="publish"}`) == 1
	})
}

// unconfirmed is the number of spooled messages not yet confirmed.
func (rb *runningBridge) unconfirmed() uint64 {
	n, _ := rb.spool.State()
	return n
}

// dropped is the number of messages dropped for any reason.
func (rb *runningBridge) dropped() uint64 {
	var n uint64
	for _, c := range rb.metrics.dropped {
		n += c.Value()
	}
	return n
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

// testConfig is a bridge configuration for tests: the relay's defaults,
// except fast reconnects and a spool in the test's temp dir.
func testConfig(t testing.TB, url, exchange string) Options {
	return Options{
		URL:            url,
		Exchange:       exchange,
		Heartbeat:      10 * time.Second,
		ConfirmWindow:  1024,
		ConfirmTimeout: 30 * time.Second,
		ReconnectMin:   50 * time.Millisecond,
		ReconnectMax:   500 * time.Millisecond,
		SpoolDir:       t.TempDir(),
		SpoolMaxBytes:  1 << 30,
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
