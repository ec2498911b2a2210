package amqp

import (
	"fmt"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// BenchmarkConsume measures the consume direction through the relay binary:
// b.N messages wait in a RabbitMQ queue, then the relay consumes them
// (amqp.consume, the default prefetch of 100), injects each into the bus and
// acknowledges it once published, and a SUB (pebbe/zmq4) on the outbound
// socket counts them. One op is one message seen by the SUB; the timer runs
// from the first to the last, so the relay's reconnect delay is left out.
// Run with a fixed count: -bench Consume -benchtime 50000x.
func BenchmarkConsume(b *testing.B) {
	broker := amqptest.Require(b)
	const (
		queue = "bench.consume"
		topic = "org.fedoraproject.prod.bench.consume"
	)
	amqptest.WithChannel(b, broker.URL(), func(ch *amqp091.Channel) error {
		return ch.ExchangeDeclare(bridgeExchange, amqp091.ExchangeTopic, true, false, false, false, nil)
	})
	consumedQueue(b, broker, queue, topic)
	// An exclusive consumer holds the queue while it fills: the relay's
	// consumer is refused (and retries) until it lets go.
	blocker := exclusiveConsumer(b, broker.URL(), queue)
	r := startRelay(b, broker, "  consume:", "    queue: "+queue)
	sub := subscribe(b, r.Outbound)
	probeUntilLive(b, r, sub)
	fillQueue(b, broker.URL(), topic, b.N)
	blocker.Close()

	next := func() {
		for {
			frames := sub.next(b, 30*time.Second)
			if frames == nil {
				b.Fatalf("the subscriber stopped getting consumed messages; relay output:\n%s", r.Output())
			}
			if frames[0] == topic {
				return
			}
		}
	}
	next()
	b.ResetTimer()
	for range b.N - 1 {
		next()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N-1)/b.Elapsed().Seconds(), "msg/s")
	// Every message was acknowledged once published, none before.
	testutil.WaitFor(b, 30*time.Second, "every message acknowledged", func() bool {
		return r.metric(b, "fedmsg_relay_amqp_injected_total") == float64(b.N) && queueDepth(b, broker.URL(), queue) == 0
	})
}

// exclusiveConsumer consumes queue exclusively, taking one message it
// never acknowledges (given back when it closes).
func exclusiveConsumer(tb testing.TB, url, queue string) *amqp091.Connection {
	tb.Helper()
	conn, err := amqp091.Dial(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Qos(1, 0, false)
	}
	if err == nil {
		_, err = ch.Consume(queue, "blocker", false, true, false, false, nil)
	}
	if err != nil {
		tb.Fatalf("exclusive consumer of %s: %v", queue, err)
	}
	return conn
}

// fillQueue publishes n messages to amq.topic with topic as their routing
// key and returns once the broker confirmed them all.
func fillQueue(tb testing.TB, url, topic string, n int) {
	tb.Helper()
	amqptest.WithChannel(tb, url, func(ch *amqp091.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, n))
		for i := range n {
			err := ch.Publish("amq.topic", topic, false, false, amqp091.Publishing{
				ContentType: "application/json", MessageId: fmt.Sprintf("bench-%07d", i),
				Body: fmt.Appendf(nil, `{"n": %d, "text": "a consumed message of about the size of a typical one"}`, i),
			})
			if err != nil {
				return err
			}
		}
		for range n {
			if c := <-confirms; !c.Ack {
				return fmt.Errorf("the broker refused message %d", c.DeliveryTag)
			}
		}
		return nil
	})
}

// queueDepth is the number of messages ready in queue.
func queueDepth(tb testing.TB, url, queue string) int {
	var n int
	amqptest.WithChannel(tb, url, func(ch *amqp091.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		n = q.Messages
		return err
	})
	return n
}
