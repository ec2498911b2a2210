package amqpbridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// shutdownConfirmWait bounds how long a stopping bridge waits for the
// confirms of messages already published.
const shutdownConfirmWait = 2 * time.Second

// inflight is a spooled record published or skipped but not yet confirmed.
type inflight struct {
	seq  uint64
	tag  uint64 // delivery tag; 0 for a record dropped as invalid
	sent time.Time
}

// publishSession publishes the spool from its oldest unconfirmed record on,
// keeping up to ConfirmWindow messages unconfirmed. Any nack, confirm timeout
// or channel error ends the session; the next one resends from the oldest
// unconfirmed record, in order.
func (b *Bridge) publishSession(ctx context.Context, conn *amqp.Connection) (progressed bool, err error) {
	setupDone := b.guardSetup(conn)
	defer setupDone()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return false, fmt.Errorf("enable publisher confirms: %w", err)
	}
	if b.opts.DeclareExchange {
		if err := ch.ExchangeDeclare(b.opts.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return false, fmt.Errorf("declare exchange %q: %w", b.opts.Exchange, err)
		}
	}
	setupDone()
	window := b.opts.ConfirmWindow
	// Buffered for the whole window: the library's reader never waits on us.
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	returned := ch.NotifyReturn(make(chan amqp.Return, 1))

	s := b.spool
	start, sentEnd := s.Cursor()
	reader := s.NewReader()
	defer reader.Close()
	reader.Seek(start)

	var (
		pending []inflight // oldest first
		nextTag uint64     = 1
		headers headerCache
		timer   = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	// settle commits the confirmed prefix of pending (skipped records included).
	settle := func() {
		for len(pending) > 0 && pending[0].tag == 0 {
			pending = pending[1:]
		}
		if len(pending) > 0 {
			s.Commit(pending[0].seq, sentEnd)
		} else {
			s.Commit(reader.Pos(), sentEnd)
		}
	}

	for {
		for len(pending) < window && ctx.Err() == nil {
			rec, ok := reader.Next()
			if !ok {
				break
			}
			msg, err := toPublishing(rec.Topic, rec.Body, rec.Received, &headers)
			if err != nil {
				reason := dropInvalid
				if errors.Is(err, errLoop) {
					reason = dropLoop
				}
				b.log.Debug("not bridging message", "topic", string(rec.Topic), "reason", err)
				b.metrics.drop(reason, 1)
				pending = append(pending, inflight{seq: rec.Seq})
				settle()
				continue
			}
			// Not mandatory: an unroutable message is confirmed and gone, like on the
			// ZeroMQ bus when nobody listens.
			if err := ch.PublishWithContext(ctx, b.opts.Exchange, string(rec.Topic), false, false, msg); err != nil {
				return progressed, fmt.Errorf("publish: %w", err)
			}
			b.metrics.published.Inc()
			if rec.Seq < sentEnd {
				b.metrics.duplicates.Inc()
			}
			sentEnd = max(sentEnd, rec.Seq+1)
			pending = append(pending, inflight{seq: rec.Seq, tag: nextTag, sent: time.Now()})
			nextTag++
		}

		var readable <-chan struct{}
		if len(pending) < window {
			readable = s.Readable()
		}
		resetTimer(timer, pending, b.opts.ConfirmTimeout)
		select {
		case c := <-confirms:
			err := b.confirmReceived(c, confirms, &pending)
			settle()
			if err != nil {
				return progressed, err
			}
			progressed = true
		case <-readable:
		case <-timer.C:
			return progressed, fmt.Errorf("no confirm for %d messages within %s", len(pending), b.opts.ConfirmTimeout)
		case r := <-returned:
			b.log.Warn("broker returned a message", "routing_key", r.RoutingKey, "reply", r.ReplyText)
		case err := <-closed:
			if err == nil {
				return progressed, errors.New("channel closed")
			}
			return progressed, fmt.Errorf("channel closed by broker: %w", err)
		case <-ctx.Done():
			// Shutting down: collect the confirms on their way so that a restart
			// resends as little as possible.
			b.awaitConfirms(confirms, &pending, shutdownConfirmWait)
			settle()
			return progressed, ctx.Err()
		}
	}
}

// confirmReceived removes c and every confirm already queued behind it from
// the front of pending. Confirms arrive in delivery tag order.
func (b *Bridge) confirmReceived(c amqp.Confirmation, confirms <-chan amqp.Confirmation, pending *[]inflight) error {
	for {
		p := *pending
		for len(p) > 0 && p[0].tag == 0 {
			p = p[1:]
		}
		*pending = p
		if len(p) == 0 || p[0].tag != c.DeliveryTag {
			return fmt.Errorf("confirm for unexpected delivery tag %d", c.DeliveryTag)
		}
		if !c.Ack {
			b.metrics.nacked.Inc()
			return fmt.Errorf("broker nacked the message with spool sequence %d", p[0].seq)
		}
		b.metrics.confirmed.Inc()
		*pending = p[1:]
		select {
		case c = <-confirms:
		default:
			return nil
		}
	}
}

// awaitConfirms processes confirms until none is outstanding, the channel
// closes, or wait passed.
func (b *Bridge) awaitConfirms(confirms <-chan amqp.Confirmation, pending *[]inflight, wait time.Duration) {
	timeout := time.After(wait)
	for slices.ContainsFunc(*pending, func(p inflight) bool { return p.tag != 0 }) {
		select {
		case c, ok := <-confirms:
			if !ok || b.confirmReceived(c, confirms, pending) != nil {
				return
			}
		case <-timeout:
			return
		}
	}
}

// resetTimer arms timer for the confirm deadline of the oldest pending message.
func resetTimer(timer *time.Timer, pending []inflight, timeout time.Duration) {
	timer.Stop()
	for _, p := range pending {
		if p.tag != 0 {
			timer.Reset(time.Until(p.sent.Add(timeout)))
			return
		}
	}
}
