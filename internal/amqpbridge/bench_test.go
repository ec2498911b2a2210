package amqpbridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// BenchmarkBridge compares the bridge (spool plus pipelined publisher
// confirms) with a naive publisher that waits for each message's confirm, as
// Fedora's ZeroMQ-to-AMQP bridge did with fedora-messaging's blocking publish.
// One op is one persistent message confirmed by the broker. Two setups: a
// durable queue bound to the exchange, where the queue's single Erlang process
// and its disk bound both publishers, and an exchange with no queue, where the
// broker confirms at once and the publishers' own design is what differs.
// The naive line also reports the ratio (pipelined_speedup_x).
func BenchmarkBridge(b *testing.B) {
	br := requireBroker(b)
	body := fedmsgBody("org.fedoraproject.prod.bench", "2026-bench", `{"commit": {"branch": "main", "rev": "0123456789abcdef"}}`)
	topic := []byte("org.fedoraproject.prod.bench")
	for _, durableQueue := range []bool{true, false} {
		name, exchange, queue := "no_queue", testName(b)+"-noqueue", ""
		if durableQueue {
			name, exchange, queue = "durable_queue", testName(b), testName(b)
			declareQueue(b, br.url(), exchange, queue)
		} else {
			withChannel(b, br.url(), func(ch *amqp.Channel) error {
				return ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
			})
		}
		b.Run(name, func(b *testing.B) { benchmarkConfirms(b, br.url(), exchange, queue, topic, body) })
	}
}

func benchmarkConfirms(b *testing.B, url, exchange, queue string, topic, body []byte) {
	var pipelined time.Duration // per message, in the last pipelined run
	b.Run("pipelined", func(b *testing.B) {
		bridge := startBridge(b, testConfig(b, url, exchange), nil)
		bridge.waitConnected(b)
		b.ResetTimer()
		drained := func(backlog uint64) func() bool {
			return func() bool {
				if dropped := bridge.dropped(); dropped > 0 {
					b.Fatalf("the bridge dropped %d messages", dropped)
				}
				return bridge.unconfirmed() <= backlog
			}
		}
		for i := range b.N {
			bridge.publish(topic, body)
			// Sustained throughput is what counts: keep the backlog bounded
			// rather than let the spool drop messages.
			if i%1024 == 0 && !drained(maxBenchBacklog)() {
				waitFor(b, time.Minute, "the backlog to shrink", drained(maxBenchBacklog/2))
			}
		}
		waitFor(b, time.Minute, "every message spooled", func() bool { return bridge.metrics.spooled.Value() >= uint64(b.N) })
		waitFor(b, time.Minute, "every message confirmed", drained(0))
		b.StopTimer()
		pipelined = b.Elapsed() / time.Duration(b.N)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		purge(b, url, queue)
	})

	b.Run("naive_confirm_each", func(b *testing.B) {
		conn, err := amqp.Dial(url)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			b.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		var headers headerCache
		b.ResetTimer()
		for range b.N {
			msg, err := toPublishing(topic, body, time.Now(), &headers)
			if err != nil {
				b.Fatal(err)
			}
			confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, string(topic), false, false, msg)
			if err != nil {
				b.Fatal(err)
			}
			if ok, err := confirm.WaitContext(ctx); !ok || err != nil {
				b.Fatalf("confirm: ack %v, %v", ok, err)
			}
		}
		b.StopTimer()
		naive := b.Elapsed() / time.Duration(b.N)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		// Printed on this line: the speedup of the last pipelined run over this one.
		if pipelined > 0 {
			b.ReportMetric(float64(naive)/float64(pipelined), "pipelined_speedup_x")
		}
		purge(b, url, queue)
	})
}

// maxBenchBacklog bounds the unconfirmed messages a pipelined run queues.
const maxBenchBacklog = 50_000

// purge empties queue, if there is one, between runs.
func purge(b *testing.B, url, queue string) {
	if queue == "" {
		return
	}
	withChannel(b, url, func(ch *amqp.Channel) error {
		_, err := ch.QueuePurge(queue, false)
		if err != nil {
			return fmt.Errorf("purge %s: %w", queue, err)
		}
		return nil
	})
}

// BenchmarkPublish measures the relay hot path's cost of the bridge (broker
// down, so every message goes to the spool) against the floor for any bridge
// that keeps a message: copying topic and body into fresh memory. One op is
// one batch of one message: from a PUB producer and from a confirming
// client (whose Completion the forwarding loop hands on without waiting). The
// timer stops every 1024 messages while the writer catches up, as it does
// in a relay, whose loop spends microseconds per message elsewhere: what is
// measured is the forwarding loop's cost, not the writer's.
func BenchmarkPublish(b *testing.B) {
	topic := []byte("org.fedoraproject.prod.git.receive")
	body := fedmsgBody(string(topic), "2026-0b3c9d2e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
		`{"commit": {"repo": "rpms/kernel", "branch": "rawhide", "rev": "0123456789abcdef0123456789abcdef01234567", "summary": "Update to 6.13"}}`)
	var baseline time.Duration
	b.Run("copy_baseline", func(b *testing.B) {
		var keep [][]byte
		for i := range b.N {
			msg := make([]byte, 0, len(topic)+len(body))
			msg = append(append(msg, topic...), body...)
			if i%1024 == 0 {
				keep = keep[:0]
			}
			keep = append(keep, msg)
		}
		baseline = b.Elapsed() / time.Duration(b.N)
	})
	for _, tc := range []struct {
		name      string
		confirmed bool
	}{{"bridge_publish", false}, {"bridge_publish_confirmed", true}} {
		b.Run(tc.name, func(b *testing.B) {
			bridge := startBridge(b, testConfig(b, deadURL(b), "x"), nil)
			topics, bodies := [][]byte{topic}, [][]byte{body}
			b.ResetTimer()
			for i := range b.N {
				bridge.Enqueue(topics, bodies, tc.confirmed)
				if i%1024 == 1023 {
					b.StopTimer()
					waitFor(b, time.Minute, "the spool writer", func() bool { return bridge.metrics.spooled.Value() > uint64(i) })
					// As the broker's confirms would: a long run must not fill the spool.
					bridge.spool.Commit(uint64(i+1), uint64(i+1))
					b.StartTimer()
				}
			}
			b.StopTimer()
			if dropped := bridge.dropped(); dropped > 0 {
				b.Fatalf("the bridge dropped %d messages", dropped)
			}
			if baseline > 0 {
				b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N))/float64(baseline), "x_copy_baseline")
			}
		})
	}
}
