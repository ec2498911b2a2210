package amqpbridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const consumerTag = "fedmsg-relay-amqp-bridge"

// consumeSession injects the deliveries of the configured queue into the
// bus, up to Prefetch at once, and settles each once the relay decided on
// it, in order: acknowledged once published, rejected without requeue when
// refused (to the queue's dead-letter exchange, if it has one). Nothing is
// acknowledged before the relay published it. Another inject error ends the
// session once the deliveries already in flight are settled; the broker
// redelivers the unsettled ones on the next.
func (b *Bridge) consumeSession(ctx context.Context, conn *amqp.Connection, inject Inject) (progressed bool, err error) {
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

	flight := newInFlight(max(cc.Prefetch, 1))
	var failed error // once set, no new deliveries: the session ends when flight is empty
	for failed == nil || flight.len() > 0 {
		more := deliveries
		if failed != nil || flight.full() {
			more = nil
		}
		select {
		case d, ok := <-more:
			if !ok {
				failed = errors.New("delivery channel closed")
				continue
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
			flight.push(d, inject(topic, body))
		case verdict := <-flight.oldestVerdict():
			settled, err := b.settle(flight.pop(), verdict)
			if err != nil {
				return progressed, err
			}
			progressed = progressed || verdict == nil
			if !settled && failed == nil {
				// Not published (the relay is stopping): the broker redelivers it.
				failed = fmt.Errorf("inject into bus: %w", verdict)
			}
		case <-ctx.Done():
			// Settle what the relay already decided on (its drain ran before
			// this): fewer duplicates on the next start.
			for flight.len() > 0 {
				select {
				case verdict := <-flight.oldestVerdict():
					if _, err := b.settle(flight.pop(), verdict); err != nil {
						return progressed, err
					}
					continue
				default:
				}
				break
			}
			return progressed, ctx.Err()
		}
	}
	return progressed, failed
}

// settle acknowledges a delivery the relay published and rejects, without
// requeue, one it refused: it would be refused again, and a dead-letter
// exchange on the queue keeps it. Any other verdict leaves it unsettled, for
// the broker to redeliver.
func (b *Bridge) settle(d amqp.Delivery, verdict error) (settled bool, err error) {
	var refused refusal
	switch {
	case verdict == nil:
		if err := d.Ack(false); err != nil {
			return false, fmt.Errorf("ack delivery: %w", err)
		}
		b.metrics.injected.Inc()
		return true, nil
	case errors.As(verdict, &refused):
		b.log.Debug("the relay refused a consumed message", "routing_key", d.RoutingKey, "message_id", d.MessageId, "reason", refused.RefusedReason())
		b.metrics.refused(refused.RefusedReason()).Inc()
		if err := d.Nack(false, false); err != nil {
			return false, fmt.Errorf("reject delivery: %w", err)
		}
		return true, nil
	}
	return false, nil
}

// inFlight is the ring of deliveries injected and not yet settled, oldest
// first: the relay answers in the order they were injected.
type inFlight struct {
	deliveries []amqp.Delivery
	verdicts   []<-chan error
	first, n   int
}

func newInFlight(size int) *inFlight {
	return &inFlight{deliveries: make([]amqp.Delivery, size), verdicts: make([]<-chan error, size)}
}

func (f *inFlight) len() int   { return f.n }
func (f *inFlight) full() bool { return f.n == len(f.deliveries) }

func (f *inFlight) push(d amqp.Delivery, verdict <-chan error) {
	i := (f.first + f.n) % len(f.deliveries)
	f.deliveries[i], f.verdicts[i] = d, verdict
	f.n++
}

// oldestVerdict is the oldest delivery's verdict channel; nil (never
// ready) when nothing is in flight.
func (f *inFlight) oldestVerdict() <-chan error {
	if f.n == 0 {
		return nil
	}
	return f.verdicts[f.first]
}

func (f *inFlight) pop() amqp.Delivery {
	d := f.deliveries[f.first]
	f.deliveries[f.first], f.verdicts[f.first] = amqp.Delivery{}, nil // let the body go
	f.first = (f.first + 1) % len(f.deliveries)
	f.n--
	return d
}

// Inject publishes one consumed message into the bus and returns at once;
// the channel receives, exactly once, nil when the relay published it, a
// refusal (an error with RefusedReason) when it refused it, or another
// error when it did not publish it (it is stopping). The answers come in
// the order of the calls.
type Inject func(topic, body []byte) <-chan error

// refusal is an inject error for a message the relay refused for good
// (relay.RefusedError, which this package does not import).
type refusal interface {
	error
	RefusedReason() string
}
