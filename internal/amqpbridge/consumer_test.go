package amqpbridge

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

type injected struct{ topic, body []byte }

// TestConsume publishes to amq.topic and checks what reaches the bus through
// inject: a fedmsg envelope, acknowledged only after inject succeeded, and
// not bridged back to AMQP when the relay hands it to Publish.
func TestConsume(t *testing.T) {
	b := requireBroker(t)
	queue := testName(t)
	cfg := testConfig(t, b.url(), testName(t)+".out")
	cfg.DeclareExchange = true
	cfg.Consume = ConsumeOptions{Queue: queue, DeclareQueue: true, Exchange: "amq.topic", BindingKeys: []string{"org.fedoraproject.test.#"}, Prefetch: 100}

	bus := make(chan injected, 10)
	var calls atomic.Int32
	inject := func(topic, body []byte) error {
		if calls.Add(1) == 1 {
			return errors.New("bus not ready") // the delivery must come again
		}
		bus <- injected{topic, body}
		return nil
	}
	bridge := startBridge(t, cfg, answeredAtOnce(inject))
	waitFor(t, 10*time.Second, "the bridge to consume", func() bool { return consumers(b.url(), queue) == 1 })

	tests := []struct {
		name     string
		pub      amqp.Publishing
		key      string
		wantID   string
		wantTime int64
	}{
		{
			name: "fedora-messaging message",
			key:  "org.fedoraproject.test.thing.done",
			pub: amqp.Publishing{
				MessageId: "6e6b9c2a-0f6b-4b4e-9f5e-3a4d2c1b0a99", ContentType: "application/json",
				Headers: amqp.Table{"sent-at": "2025-03-04T05:06:07+00:00"}, Body: []byte(`{"x": 1}`),
			},
			wantID: "2025-6e6b9c2a-0f6b-4b4e-9f5e-3a4d2c1b0a99", wantTime: 1741064767,
		},
		{
			name:   "id with year kept",
			key:    "org.fedoraproject.test.other",
			pub:    amqp.Publishing{MessageId: "2024-abc", Timestamp: time.Unix(1700000000, 0), Body: []byte(`{"y": [true]}`)},
			wantID: "2024-abc", wantTime: 1700000000,
		},
	}
	withChannel(t, b.url(), func(ch *amqp.Channel) error {
		// Not bound: must never arrive.
		return ch.PublishWithContext(context.Background(), "amq.topic", "org.fedoraproject.elsewhere", false, false, amqp.Publishing{Body: []byte(`{}`)})
	})
	var lastI float64
	for _, tt := range tests {
		// One at a time: a later delivery injected while the failed first
		// one is redelivered would reach the bus before it.
		withChannel(t, b.url(), func(ch *amqp.Channel) error {
			return ch.PublishWithContext(context.Background(), "amq.topic", tt.key, false, false, tt.pub)
		})
		var got injected
		select {
		case got = <-bus:
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: nothing injected", tt.name)
		}
		env := mustJSON(t, got.body)
		want := map[string]any{
			"topic": tt.key, "msg": mustJSON(t, tt.pub.Body), "msg_id": tt.wantID,
			"i": env["i"], "timestamp": float64(tt.wantTime), "username": "amqp-bridge",
		}
		if string(got.topic) != tt.key || !reflect.DeepEqual(env, want) {
			t.Errorf("%s: injected [%s, %s], want topic %s and %v", tt.name, got.topic, got.body, tt.key, want)
		}
		if i, _ := env["i"].(float64); i <= lastI {
			t.Errorf("%s: i = %v, not above the previous %v", tt.name, env["i"], lastI)
		} else {
			lastI = i
		}
		// Another relay whose bridge injected this message hands it to its own
		// bridge like any other: it must not go back to AMQP.
		bridge.publish(got.topic, got.body)
	}
	if n := calls.Load(); n != int32(len(tests))+1 {
		t.Errorf("inject called %d times, want %d (one failure, then each message once)", n, len(tests)+1)
	}
	waitFor(t, 10*time.Second, "the publisher to skip the injected messages", func() bool {
		return bridge.metric(t, `fedmsg_relay_amqp_dropped_total{reason="loop"}`) == float64(len(tests))
	})
	bridge.stop()
	withChannel(t, b.url(), func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err == nil && q.Messages != 0 {
			t.Errorf("queue %s holds %d messages after the bridge stopped: not all acknowledged", queue, q.Messages)
		}
		return err
	})
	for series, want := range map[string]float64{
		`fedmsg_relay_amqp_published_total`: 0,
		`fedmsg_relay_amqp_injected_total`:  float64(len(tests)),
	} {
		if got := bridge.metric(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// consumers returns the number of consumers of queue, or -1 if it does not exist.
func consumers(url, queue string) int {
	conn, err := amqp.Dial(url)
	if err != nil {
		return -1
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return -1
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return -1
	}
	return q.Consumers
}

// refusedFor is a relay refusal as Inject answers it.
type refusedFor string

func (r refusedFor) Error() string         { return "refused: " + string(r) }
func (r refusedFor) RefusedReason() string { return string(r) }

// TestConsumePipelined holds the relay's answers back: the bridge keeps
// exactly prefetch deliveries in flight, acknowledges none before its
// answer, rejects a refused one, and leaves one the relay did not publish
// to the broker, which delivers it again.
func TestConsumePipelined(t *testing.T) {
	b := requireBroker(t)
	queue := testName(t)
	cfg := testConfig(t, b.url(), testName(t)+".out")
	cfg.DeclareExchange = true
	const prefetch, total = 4, 10
	// A binding of its own: other tests' durable queues stay bound to amq.topic.
	cfg.Consume = ConsumeOptions{Queue: queue, DeclareQueue: true, Exchange: "amq.topic", BindingKeys: []string{"pipelined.#"}, Prefetch: prefetch}
	t.Cleanup(func() {
		withChannel(t, b.url(), func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(queue, false, false, false)
			return err
		})
	})

	var mu sync.Mutex
	var answers []chan error
	var ids []string
	inject := func(topic, body []byte) <-chan error {
		mu.Lock()
		defer mu.Unlock()
		answer := make(chan error, 1)
		answers = append(answers, answer)
		ids = append(ids, mustJSON(t, body)["msg_id"].(string))
		return answer
	}
	injected := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(answers)
	}
	answer := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		answers[i] <- err
	}
	bridge := startBridge(t, cfg, inject)
	waitFor(t, 10*time.Second, "the bridge to consume", func() bool { return consumers(b.url(), queue) == 1 })
	withChannel(t, b.url(), func(ch *amqp.Channel) error {
		for i := range total {
			pub := amqp.Publishing{MessageId: fmt.Sprintf("2026-pipelined-%d", i), Body: []byte(`{}`)}
			if err := ch.PublishWithContext(context.Background(), "amq.topic", "pipelined.test", false, false, pub); err != nil {
				return err
			}
		}
		return nil
	})

	waitFor(t, 10*time.Second, "prefetch deliveries injected", func() bool { return injected() == prefetch })
	time.Sleep(300 * time.Millisecond)
	if n := injected(); n != prefetch {
		t.Fatalf("%d injected with no answer yet, want prefetch (%d)", n, prefetch)
	}
	if n := bridge.metric(t, "fedmsg_relay_amqp_injected_total"); n != 0 {
		t.Fatalf("%v acknowledged before the relay answered", n)
	}
	// Published, refused, published, not published (the relay is stopping).
	answer(0, nil)
	answer(1, refusedFor("oversize"))
	answer(2, nil)
	answer(3, errors.New("relay is shutting down"))
	// Publish everything else, the fourth delivery's second coming included.
	answered := prefetch
	waitFor(t, 20*time.Second, "every published delivery acknowledged", func() bool {
		for ; answered < injected(); answered++ {
			answer(answered, nil)
		}
		return bridge.metric(t, "fedmsg_relay_amqp_injected_total") == total-1
	})
	mu.Lock()
	got := slices.Clone(ids)
	mu.Unlock()
	if len(got) != total+1 || slices.Index(got[prefetch:], got[3]) < 0 {
		t.Errorf("injected %v: want each of the %d once and the unpublished %s once more", got, total, got[3])
	}
	if n := bridge.metric(t, `fedmsg_relay_amqp_consume_refused_total{reason="oversize"}`); n != 1 {
		t.Errorf("refused %v, want 1", n)
	}
	bridge.stop()
	withChannel(t, b.url(), func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err == nil && q.Messages != 0 {
			t.Errorf("queue %s holds %d messages: not all settled", queue, q.Messages)
		}
		return err
	})
}
