package amqp

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// probeTopic is what zmqpeer.py's scenario sends until its paths are live;
// the relay bridges those too, so the tests leave them out.
const probeTopic = "org.fedoraproject.test.probe"

// TestFedoraMessagingFormat sends 1,000 messages from a pyzmq PUB (as fedmsg
// scripts do) through the relay binary and checks that a consumer on the
// broker sees each exactly once, in order, in fedora-messaging's format,
// field by field.
func TestFedoraMessagingFormat(t *testing.T) {
	broker := amqptest.Require(t)
	got := bridgeQueue(t, broker)
	r := startRelay(t, broker)

	const n = 1000
	sent := make([]message, n)
	frames := make([][][]byte, n)
	for i := range sent {
		sent[i] = message{
			topic: fmt.Sprintf("org.fedoraproject.prod.e2e.app%d.event", i%7),
			msgID: fmt.Sprintf("2026-%08d-0000-4000-8000-000000000000", i),
			msg:   fmt.Sprintf(`{"n": %d, "text": "caf\u00e9 \"quoted\"", "nested": {"list": [1, 2.5, null]}}`, i),
		}
		frames[i] = sent[i].frames()
	}
	before := time.Now().UTC().Truncate(time.Second)
	received := testutil.RunScenario(t, testutil.Scenario{
		Inbound: r.Inbound, Outbound: r.Outbound, Subscribers: 1,
		Producers: [][][][]byte{frames}, Expect: n, Idle: 10,
	})
	if len(received[0]) != n {
		t.Fatalf("the ZeroMQ subscriber got %d of %d messages", len(received[0]), n)
	}
	var deliveries []amqp091.Delivery
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d messages on the broker", n), func() bool {
		deliveries = withoutProbes(got.Snapshot())
		return len(deliveries) >= n
	})
	after := time.Now().UTC()
	if len(deliveries) != n {
		t.Fatalf("the broker delivered %d messages, want %d", len(deliveries), n)
	}
	for i, d := range deliveries {
		checkDelivery(t, i, d, sent[i], before, after)
	}
	if t.Failed() {
		return
	}
	// A consumer can get a persistent message before the broker confirms it
	// (after its disk write): the confirms may still be on their way.
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d confirms", n), func() bool {
		return r.metric(t, "fedmsg_relay_amqp_confirmed_total") >= n
	})
}

func withoutProbes(ds []amqp091.Delivery) []amqp091.Delivery {
	var out []amqp091.Delivery
	for _, d := range ds {
		if d.RoutingKey != probeTopic {
			out = append(out, d)
		}
	}
	return out
}

// checkDelivery compares one delivery with the message sent as the i-th.
func checkDelivery(t *testing.T, i int, d amqp091.Delivery, want message, before, after time.Time) {
	t.Helper()
	fields := []struct {
		name      string
		got, want any
	}{
		{"exchange", d.Exchange, bridgeExchange},
		{"routing key", d.RoutingKey, want.topic},
		{"body", string(d.Body), want.msg},
		{"content_type", d.ContentType, "application/json"},
		{"content_encoding", d.ContentEncoding, "utf-8"},
		{"delivery_mode", d.DeliveryMode, amqp091.Persistent},
		{"message_id", d.MessageId, want.msgID},
		{"priority property", d.Priority, uint8(0)},
		{"header fedora_messaging_schema", d.Headers["fedora_messaging_schema"], "base.message"},
		{"header fedora_messaging_severity", d.Headers["fedora_messaging_severity"], int32(20)},
		{"header priority", d.Headers["priority"], int32(0)},
		{"number of headers", len(d.Headers), 4},
	}
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("message %d (%s): %s = %#v, want %#v", i, want.msgID, f.name, f.got, f.want)
		}
	}
	sentAt, ok := d.Headers["sent-at"].(string)
	if !ok {
		t.Errorf("message %d: header sent-at = %#v, want a string", i, d.Headers["sent-at"])
		return
	}
	// fedora-messaging writes Python's isoformat() of an aware UTC datetime, in seconds.
	at, err := time.Parse("2006-01-02T15:04:05+00:00", sentAt)
	if err != nil || at.Before(before) || at.After(after) {
		t.Errorf("message %d: sent-at %q is not a UTC ISO-8601 time in seconds within [%s, %s] (%v)", i, sentAt, before.Format(time.RFC3339), after.Format(time.RFC3339), err)
	}
}

// TestConsumeIntoBus publishes to amq.topic, as a fedora-messaging publisher
// does, and checks that a ZeroMQ SUB on the relay's outbound gets it as a
// fedmsg envelope from "amqp-bridge", and that the relay does not bridge it
// back to the bridge exchange.
func TestConsumeIntoBus(t *testing.T) {
	broker := amqptest.Require(t)
	bridged := bridgeQueue(t, broker)
	const queue = "test.consume-into-bus"
	r := startRelay(t, broker,
		"  consume:",
		"    queue: "+queue,
		"    declare_queue: true",
		"    binding_keys: [org.fedoraproject.prod.reverse.#]",
	)
	t.Cleanup(func() {
		amqptest.WithChannel(t, broker.URL(), func(ch *amqp091.Channel) error {
			_, err := ch.QueueDelete(queue, false, false, false)
			return err
		})
	})
	r.WaitOutput(t, "amqp: consuming", 15*time.Second)

	sub := subscribe(t, r.Outbound)
	probeUntilLive(t, r, sub)

	const topic = "org.fedoraproject.prod.reverse.hello"
	body := `{"hello": "world", "n": 1}`
	amqptest.WithChannel(t, broker.URL(), func(ch *amqp091.Channel) error {
		return ch.Publish("amq.topic", topic, false, false, amqp091.Publishing{
			ContentType: "application/json", MessageId: "1b4f6ea4-reverse", Body: []byte(body),
			Headers: amqp091.Table{"sent-at": "2026-11-26T12:00:00+00:00"},
		})
	})
	frames := sub.next(t, 15*time.Second)
	if frames == nil {
		t.Fatalf("no message on the relay's outbound:\n%s", r.Output())
	}
	if len(frames) != 2 || frames[0] != topic {
		t.Fatalf("got frames %q, want [%s, envelope]", frames, topic)
	}
	var env struct {
		Topic     string          `json:"topic"`
		Msg       json.RawMessage `json:"msg"`
		MsgID     string          `json:"msg_id"`
		I         *int            `json:"i"`
		Timestamp *float64        `json:"timestamp"`
		Username  string          `json:"username"`
	}
	if err := json.Unmarshal([]byte(frames[1]), &env); err != nil {
		t.Fatalf("envelope %s: %v", frames[1], err)
	}
	var gotMsg, wantMsg any
	json.Unmarshal(env.Msg, &gotMsg)
	json.Unmarshal([]byte(body), &wantMsg)
	checks := []struct {
		name      string
		got, want any
	}{
		{"topic", env.Topic, topic},
		{"msg", fmt.Sprint(gotMsg), fmt.Sprint(wantMsg)},
		{"msg_id", env.MsgID, "2026-1b4f6ea4-reverse"},
		{"username", env.Username, "amqp-bridge"},
		{"has i", env.I != nil, true},
		{"timestamp", env.Timestamp != nil && int64(*env.Timestamp) == time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Unix(), true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("envelope %s: %s = %v, want %v", frames[1], c.name, c.got, c.want)
		}
	}

	// Not bridged back: a sentinel published after it reaches the bridge
	// exchange, in order, and nothing from amqp-bridge came before it.
	sentinel := message{topic: "org.fedoraproject.prod.e2e.sentinel", msgID: "2026-sentinel", msg: `{}`}
	producer := newConfirmedProducer(t, r.Confirm)
	if err := producer.send([]message{sentinel}, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "the sentinel on the bridge exchange", func() bool {
		for _, d := range bridged.Snapshot() {
			if d.MessageId == sentinel.msgID {
				return true
			}
		}
		return false
	})
	for _, d := range withoutProbes(bridged.Snapshot()) {
		if d.MessageId != sentinel.msgID {
			t.Errorf("bridged back to %s: %s %s %s", bridgeExchange, d.RoutingKey, d.MessageId, d.Body)
		}
	}
	// The relay hands the bridge nothing it injected: no spooling, no loop drop.
	if v := r.metric(t, `fedmsg_relay_amqp_dropped_total{reason="loop"}`); v != 0 {
		t.Errorf(`fedmsg_relay_amqp_dropped_total{reason="loop"} = %v, want 0`, v)
	}
	if strings.Contains(r.Output(), "rejecting consumed message") {
		t.Errorf("the bridge rejected a consumed message:\n%s", r.Output())
	}
}
