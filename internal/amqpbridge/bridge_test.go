package amqpbridge

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestPublishFormat checks, field by field and in order, every message a
// consumer receives for what was handed to Publish, and that loop and invalid
// messages are dropped and counted.
func TestPublishFormat(t *testing.T) {
	b := requireBroker(t)
	exchange, queue := testName(t), testName(t)
	declareQueue(t, b.url(), exchange, queue)
	got := startCollector(t, b.url(), queue)
	bridge := startBridge(t, testConfig(t, b.url(), exchange), nil)

	type sent struct{ topic, msgID, msg string }
	var want []sent
	before := time.Now().UTC().Truncate(time.Second)
	for i := range 300 {
		s := sent{
			topic: fmt.Sprintf("org.fedoraproject.prod.git.receive.%d", i%7),
			msgID: fmt.Sprintf("2026-%08d-0000-4000-8000-000000000000", i),
			msg:   fmt.Sprintf(`{"commit": {"n": %d, "text": "caf\u00e9 \"quoted\""}, "list": [1, 2.5, null]}`, i),
		}
		want = append(want, s)
		bridge.publish([]byte(s.topic), fedmsgBody(s.topic, s.msgID, s.msg))
		switch i {
		case 10: // injected by an AMQP bridge: must not loop back
			loop := []byte(`{"topic": "t.loop", "msg": {}, "msg_id": "2026-loop", "username": "amqp-bridge"}`)
			bridge.publish([]byte("t.loop"), loop)
		case 20: // fedora-messaging bodies must be JSON objects
			bridge.publish([]byte("t.invalid"), fedmsgBody("t.invalid", "2026-invalid", `"just a string"`))
		}
	}
	waitFor(t, 30*time.Second, "all messages at the consumer", func() bool {
		unique, _ := got.counts()
		return unique >= len(want)
	})
	after := time.Now().UTC()

	deliveries := got.snapshot()
	if len(deliveries) != len(want) {
		t.Fatalf("consumer got %d deliveries, want %d", len(deliveries), len(want))
	}
	for i, d := range deliveries {
		w := want[i]
		sentAt, _ := d.Headers[sentAtHeader].(string)
		at, err := time.Parse(sentAtLayout, sentAt)
		if err != nil || at.Before(before) || at.After(after) {
			t.Errorf("message %d: sent-at %q not a UTC second between %s and %s (%v)", i, sentAt, before, after, err)
		}
		checks := []struct {
			field     string
			got, want any
		}{
			{"exchange", d.Exchange, exchange},
			{"routing key", d.RoutingKey, w.topic},
			{"message_id", d.MessageId, w.msgID},
			{"body", string(d.Body), w.msg},
			{"content_type", d.ContentType, "application/json"},
			{"content_encoding", d.ContentEncoding, "utf-8"},
			{"delivery_mode", d.DeliveryMode, uint8(2)},
			{"priority", d.Priority, uint8(0)},
			{"headers", d.Headers, amqp.Table{
				"fedora_messaging_schema":   "base.message",
				"fedora_messaging_severity": int32(20),
				"sent-at":                   sentAt,
				"priority":                  int32(0),
			}},
		}
		for _, c := range checks {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("message %d (%s): %s = %#v, want %#v", i, w.msgID, c.field, c.got, c.want)
			}
		}
	}
	// Consumers may see messages before the bridge sees their confirms.
	waitFor(t, 10*time.Second, "the confirms", func() bool {
		return bridge.metric(t, "fedmsg_relay_amqp_confirmed_total") >= float64(len(want))
	})
	for series, want := range map[string]float64{
		`fedmsg_relay_amqp_dropped_total{reason="loop"}`:    1,
		`fedmsg_relay_amqp_dropped_total{reason="invalid"}`: 1,
		`fedmsg_relay_amqp_confirmed_total`:                 float64(len(want)),
		`fedmsg_relay_amqp_duplicates_resent_total`:         0,
	} {
		if got := bridge.metric(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestNoExchangeDeclared checks that by default the bridge never declares
// the exchange (production users lack configure permission): with the exchange
// missing nothing is published and messages wait in the spool until it exists.
func TestNoExchangeDeclared(t *testing.T) {
	b := requireBroker(t)
	exchange, queue := testName(t), testName(t)
	withChannel(t, b.url(), func(ch *amqp.Channel) error { return ch.ExchangeDelete(exchange, false, false) })
	bridge := startBridge(t, testConfig(t, b.url(), exchange), nil)
	bridge.publish([]byte("t.a"), fedmsgBody("t.a", "2026-a", `{}`))
	waitFor(t, 10*time.Second, "a failed publish attempt", func() bool {
		return bridge.metric(t, `fedmsg_relay_amqp_reconnects_total{direction="publish"}`) >= 1
	})
	if n := bridge.metric(t, "fedmsg_relay_amqp_spool_messages"); n != 1 {
		t.Fatalf("spool holds %v messages while the exchange is missing, want 1", n)
	}
	// The operator creates the exchange. A resend may land between its
	// declare and the queue's bind, where the broker would drop the message as
	// unroutable and still confirm it: an alternate exchange already bound to
	// the queue takes it then.
	ae := exchange + ".unroutable"
	withChannel(t, b.url(), func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(ae, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueuePurge(queue, false); err != nil {
			return err
		}
		if err := ch.QueueBind(queue, "", ae, false, nil); err != nil {
			return err
		}
		if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, amqp.Table{"alternate-exchange": ae}); err != nil {
			return err
		}
		return ch.QueueBind(queue, "#", exchange, false, nil)
	})
	got := startCollector(t, b.url(), queue)
	waitFor(t, 10*time.Second, "the spooled message", func() bool {
		unique, _ := got.counts()
		return unique == 1
	})
}

// TestDeclareExchange checks declare_exchange: true creates a durable topic exchange.
func TestDeclareExchange(t *testing.T) {
	b := requireBroker(t)
	exchange := testName(t)
	cfg := testConfig(t, b.url(), exchange)
	cfg.DeclareExchange = true
	bridge := startBridge(t, cfg, nil)
	bridge.publish([]byte("t.a"), fedmsgBody("t.a", "2026-a", `{}`))
	waitFor(t, 10*time.Second, "the confirm", func() bool {
		return bridge.metric(t, "fedmsg_relay_amqp_confirmed_total") == 1
	})
	withChannel(t, b.url(), func(ch *amqp.Channel) error {
		return ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
	})
}

// TestPublishAfterClose checks that a closed bridge drops instead of blocking.
func TestPublishAfterClose(t *testing.T) {
	cfg := testConfig(t, deadURL(t), "x")
	bridge := startBridge(t, cfg, nil)
	bridge.stop()
	bridge.publish([]byte("t"), fedmsgBody("t", "2026-x", `{}`))
	if got := bridge.metric(t, `fedmsg_relay_amqp_dropped_total{reason="closed"}`); got != 1 {
		t.Fatalf("dropped{closed} = %v, want 1", got)
	}
}
