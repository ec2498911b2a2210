package amqpbridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const consumerTag = "fedmsg-relay-amqp-bridge"

// consumeSession injects each delivery of the configured queue into the bus
// and acknowledges it once inject returned nil (the relay published it). A
// delivery the relay refused is rejected without requeue (to the queue's
// dead-letter exchange, if it has one); another inject error ends the
// session, and the broker redelivers the unacknowledged messages on the next.
func (b *Bridge) consumeSession(ctx context.Context, conn *amqp.Connection, inject func(topic, body []byte) error) (progressed bool, err error) {
	cc := b.opts.Consume
	setupDone := b.guardSetup(conn)
	defer setupDone()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(cc.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch %d: %w", cc.Prefetch, err)
	}
	if cc.DeclareQueue {
		if _, err := ch.QueueDeclare(cc.Queue, true, false, false, false, nil); err != nil {
			return false, fmt.Errorf("declare queue %q: %w", cc.Queue, err)
		}
	}
	for _, key := range cc.BindingKeys {
		if err := ch.QueueBind(cc.Queue, key, cc.Exchange, false, nil); err != nil {
			return false, fmt.Errorf("bind queue %q to %q with %q: %w", cc.Queue, cc.Exchange, key, err)
		}
	}
	deliveries, err := ch.ConsumeWithContext(ctx, cc.Queue, consumerTag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume queue %q: %w", cc.Queue, err)
	}
	setupDone()
	b.log.Info("consuming", "queue", cc.Queue, "exchange", cc.Exchange, "binding_keys", cc.BindingKeys)
	for {
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-deliveries:
		case <-ctx.Done():
			return progressed, ctx.Err()
		}
		if !ok {
			return progressed, errors.New("delivery channel closed")
		}
		b.metrics.consumed.Inc()
		topic, body, err := toEnvelope(d, b.injectedSeq.Add(1), time.Now())
		if err != nil {
			b.log.Warn("rejecting consumed message", "routing_key", d.RoutingKey, "message_id", d.MessageId, "error", err)
			b.metrics.drop(dropConsumed, 1)
			if err := d.Nack(false, false); err != nil {
				return progressed, fmt.Errorf("reject delivery: %w", err)
			}
			continue
		}
		err = inject(topic, body)
		var refused refusal
		switch {
		case err == nil:
			if err := d.Ack(false); err != nil {
				return progressed, fmt.Errorf("ack delivery: %w", err)
			}
			b.metrics.injected.Inc()
			progressed = true
		case errors.As(err, &refused):
			// Never requeued: it would be refused again. A dead-letter exchange
			// on the queue keeps it.
			b.log.Debug("the relay refused a consumed message", "routing_key", d.RoutingKey, "message_id", d.MessageId, "reason", refused.RefusedReason())
			b.metrics.refused(refused.RefusedReason()).Inc()
			if err := d.Nack(false, false); err != nil {
				return progressed, fmt.Errorf("reject delivery: %w", err)
			}
		default:
			// Not published (the relay is stopping): the broker redelivers it.
			return progressed, fmt.Errorf("inject into bus: %w", err)
		}
	}
}

// refusal is an inject error for a message the relay refused for good
// (relay.RefusedError, which this package does not import).
type refusal interface {
	error
	RefusedReason() string
}
