package amqpbridge

import (
	"context"
	"errors"
	"reflect"
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
	bridge := startBridge(t, cfg, inject)
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
		if err := ch.PublishWithContext(context.Background(), "amq.topic", "org.fedoraproject.elsewhere", false, false, amqp.Publishing{Body: []byte(`{}`)}); err != nil {
			return err
		}
		for _, tt := range tests {
			if err := ch.PublishWithContext(context.Background(), "amq.topic", tt.key, false, false, tt.pub); err != nil {
				return err
			}
		}
		return nil
	})

	var lastI float64
	for _, tt := range tests {
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
