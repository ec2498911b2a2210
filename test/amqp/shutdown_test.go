package amqp

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// TestConsumeShutdown stops the relay with SIGTERM while it consumes a
// stream of messages from RabbitMQ into the bus. Each message must be either
// published on the bus (a SUB connected throughout sees it) or still in the
// queue (not acknowledged): a message acknowledged to the broker and never
// published is lost.
func TestConsumeShutdown(t *testing.T) {
	broker := amqptest.Require(t)
	const (
		queue = "test.consume-shutdown"
		topic = "org.fedoraproject.prod.shutdown.event"
		total = 20000
	)
	consumedQueue(t, broker, queue, topic)
	bridgeQueue(t, broker) // the relay bridges the probes
	r := startRelay(t, broker, "  consume:", "    queue: "+queue)
	r.WaitOutput(t, "amqp: consuming", 15*time.Second)
	sub := subscribe(t, r.Outbound)
	probeUntilLive(t, r, sub)

	// Collect every message id the bus publishes until the relay is gone.
	seen := make(chan map[string]int, 1)
	go func() {
		ids := map[string]int{}
		for {
			frames := sub.next(t, 3*time.Second)
			if frames == nil {
				seen <- ids
				return
			}
			var env struct {
				MsgID string `json:"msg_id"`
			}
			if frames[0] == topic && json.Unmarshal([]byte(frames[1]), &env) == nil {
				ids[env.MsgID]++
			}
		}
	}()
	amqptest.WithChannel(t, broker.URL(), func(ch *amqp091.Channel) error {
		for i := range total {
			err := ch.Publish("amq.topic", topic, false, false, amqp091.Publishing{
				ContentType: "application/json", MessageId: fmt.Sprintf("shutdown-%06d", i),
				Body: []byte(fmt.Sprintf(`{"n": %d}`, i)),
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	// Stop the relay while it consumes.
	testutil.WaitFor(t, 30*time.Second, "the relay to inject a few thousand messages", func() bool {
		return r.metric(t, "fedmsg_relay_amqp_injected_total") >= total/10
	})
	if err := r.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.Cmd.Wait(); err != nil {
		t.Fatalf("relay after SIGTERM: %v", err)
	}
	published := <-seen

	ready := queueDepth(t, broker.URL(), queue)
	twice := 0
	for _, n := range published {
		if n > 1 {
			twice++
		}
	}
	lost := total - len(published) - ready
	t.Logf("%d messages: %d published on the bus before SIGTERM completed (%d twice), %d still in the queue, %d lost", total, len(published), twice, ready, lost)
	if lost > 0 {
		t.Errorf("%d messages were acknowledged to the broker but never published on the bus", lost)
	}
}

// probeUntilLive sends probes through the relay's confirmed inbound until
// the subscriber gets one (its subscription reached the relay), then
// discards stray probes.
func probeUntilLive(t testing.TB, r *relay, sub *subscriber) {
	t.Helper()
	producer := newConfirmedProducer(t, r.Confirm)
	probe := message{topic: probeTopic, msgID: "2026-probe", msg: `{}`}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := producer.send([]message{probe}, deadline); err != nil {
			t.Fatal(err)
		}
		if frames := sub.next(t, 100*time.Millisecond); frames != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscriber never received a probe")
		}
	}
	for sub.next(t, 200*time.Millisecond) != nil {
	}
}
