package amqp

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// TestConsumeRefusedDeadLettered consumes, through the relay binary, one
// message for every way the relay or the bridge can refuse one (topic filter,
// size, not JSON) between good ones, with validate_signatures on: the good
// ones (unsigned envelopes the bridge built) reach the bus and are
// acknowledged, every refused one is rejected into the queue's dead-letter
// queue, and none is acknowledged and lost or left unacknowledged.
func TestConsumeRefusedDeadLettered(t *testing.T) {
	broker := amqptest.Require(t)
	const (
		queue, dlx, dlq = "test.consume-refused", "test.consume-refused.dlx", "test.consume-refused.dlq"
		allowed         = "org.fedoraproject.prod.consume"
		filtered        = "org.fedoraproject.stg.consume"
	)
	amqptest.DeclareQueue(t, broker.URL(), dlx, dlq) // dlx is a topic exchange, dlq bound with "#"
	amqptest.WithChannel(t, broker.URL(), func(ch *amqp091.Channel) error {
		_, err := ch.QueueDeclare(queue, false, false, false, false, amqp091.Table{"x-dead-letter-exchange": dlx})
		return err
	})
	t.Cleanup(func() {
		amqptest.WithChannel(t, broker.URL(), func(ch *amqp091.Channel) error {
			for _, q := range []string{queue, dlq} {
				if _, err := ch.QueueDelete(q, false, false, false); err != nil {
					return err
				}
			}
			return nil
		})
	})
	deadLettered := amqptest.StartCollector(t, broker.URL(), dlq)

	pki, err := signingtest.Generate(signingtest.Cert{Name: "producer"})
	if err != nil {
		t.Fatal(err)
	}
	ssldir := t.TempDir()
	if err := pki.WriteDir(ssldir); err != nil {
		t.Fatal(err)
	}
	r := startRelayWith(t, broker, []string{
		"topic_allowlist: [org.fedoraproject.prod]",
		"max_message_bytes: 4096",
		"validate_signatures: true",
		"ca_cert: " + filepath.Join(ssldir, signingtest.CAFile),
		"crl: " + filepath.Join(ssldir, signingtest.CRLFile),
	},
		"  consume:",
		"    queue: "+queue,
		fmt.Sprintf("    binding_keys: [%s.#, %s.#]", allowed, filtered),
	)
	r.WaitOutput(t, "amqp: consuming", 15*time.Second)

	publish := func(key, id, body string) {
		amqptest.WithChannel(t, broker.URL(), func(ch *amqp091.Channel) error {
			return ch.Publish("amq.topic", key, false, false, amqp091.Publishing{MessageId: id, Body: []byte(body)})
		})
	}
	// The subscriber joins late (PUB/SUB): consumed probes until it gets one.
	sub := subscribe(t, r.Outbound)
	deadline := time.Now().Add(15 * time.Second)
	for probes := 0; ; probes++ {
		publish(allowed+".probe", fmt.Sprintf("probe-%d", probes), `{}`)
		if frames := sub.next(t, 100*time.Millisecond); frames != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no consumed probe reached the bus:\n%s", r.Output())
		}
	}
	for sub.next(t, 300*time.Millisecond) != nil {
	}

	publish(allowed+".good", "good-1", `{"n": 1}`)
	publish(filtered+".x", "refused-topic", `{"n": 2}`)
	publish(allowed+".big", "refused-size", fmt.Sprintf(`{"pad": %q}`, strings.Repeat("x", 5000)))
	publish(allowed+".bad", "refused-json", `{"not json`)
	publish(allowed+".good", "good-2", `{"n": 3}`)

	var published []string
	for len(published) < 2 {
		frames := sub.next(t, 15*time.Second)
		if frames == nil {
			t.Fatalf("the bus got %v of the good messages; relay output:\n%s", published, r.Output())
		}
		if strings.Contains(frames[1], `"msg_id": "2026-good-`) || strings.Contains(frames[1], `"msg_id":"2026-good-`) {
			published = append(published, frames[0])
		}
	}
	testutil.WaitFor(t, 15*time.Second, "three dead-lettered messages", func() bool { return len(deadLettered.Snapshot()) >= 3 })
	var dead []string
	for _, d := range deadLettered.Snapshot() {
		dead = append(dead, d.MessageId)
	}
	slices.Sort(dead)
	if want := []string{"refused-json", "refused-size", "refused-topic"}; !slices.Equal(dead, want) {
		t.Errorf("dead-lettered %v, want %v", dead, want)
	}
	// Nothing is left in the queue, delivered and not acknowledged or waiting.
	testutil.WaitFor(t, 15*time.Second, "the consumed queue to be empty", func() bool {
		var n int
		amqptest.WithChannel(t, broker.URL(), func(ch *amqp091.Channel) error {
			q, err := ch.QueueDeclarePassive(queue, false, false, false, false, amqp091.Table{"x-dead-letter-exchange": dlx})
			n = q.Messages
			return err
		})
		return n == 0 && r.metric(t, `fedmsg_relay_amqp_consume_refused_total{reason="oversize"}`) == 1
	})
	for series, want := range map[string]float64{
		`fedmsg_relay_amqp_consume_refused_total{reason="topic_not_allowed"}`: 1,
		`fedmsg_relay_amqp_consume_refused_total{reason="oversize"}`:          1,
		`fedmsg_relay_amqp_consume_refused_total{reason="signature"}`:         0,
		`fedmsg_relay_amqp_dropped_total{reason="consume_invalid"}`:           1,
	} {
		if got := r.metric(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if consumed, injected := r.metric(t, "fedmsg_relay_amqp_consumed_total"), r.metric(t, "fedmsg_relay_amqp_injected_total"); consumed != injected+3 {
		t.Errorf("consumed %v, injected (acknowledged) %v: want all but the 3 refused acknowledged", consumed, injected)
	}
}
