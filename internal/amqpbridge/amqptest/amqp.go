package amqptest

import (
	"context"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DeclareQueue declares exchange (topic, durable) and a durable queue bound to
// it with "#", as an operator would, through a connection of the test's own,
// and empties the queue.
func DeclareQueue(tb testing.TB, url, exchange, queue string) {
	tb.Helper()
	WithChannel(tb, url, func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			return err
		}
		if err := ch.QueueBind(queue, "#", exchange, false, nil); err != nil {
			return err
		}
		_, err := ch.QueuePurge(queue, false)
		return err
	})
}

// WithChannel runs fn on a channel of a fresh connection to url.
func WithChannel(tb testing.TB, url string, fn func(*amqp.Channel) error) {
	tb.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		tb.Fatalf("test connection: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatalf("test channel: %v", err)
	}
	if err := fn(ch); err != nil {
		tb.Fatalf("test channel operation: %v", err)
	}
}

// Collector consumes a queue (reconnecting across broker restarts) and keeps
// every delivery, acknowledging it once recorded.
type Collector struct {
	mu         sync.Mutex
	deliveries []amqp.Delivery
	seen       map[string]int // message id -> times delivered
	cancel     context.CancelFunc
	done       chan struct{}
}

// StartCollector consumes queue until the test ends.
func StartCollector(tb testing.TB, url, queue string) *Collector {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{seen: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			c.consume(ctx, url, queue)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	tb.Cleanup(c.Stop)
	return c
}

// Stop ends consuming (idempotent).
func (c *Collector) Stop() {
	c.cancel()
	<-c.done
}

func (c *Collector) consume(ctx context.Context, url, queue string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	if err := ch.Qos(1000, 0, false); err != nil {
		return
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return
	}
	// Acknowledge in batches (multiple) to spare the broker's CPU.
	unacked := 0
	for d := range deliveries {
		c.mu.Lock()
		c.deliveries = append(c.deliveries, d)
		c.seen[d.MessageId]++
		c.mu.Unlock()
		if unacked++; unacked < 200 && len(deliveries) > 0 {
			continue
		}
		if d.Ack(true) != nil {
			return
		}
		unacked = 0
	}
}

// Counts returns the number of distinct message ids and of extra deliveries.
func (c *Collector) Counts() (unique, duplicates int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen), len(c.deliveries) - len(c.seen)
}

// Redelivered returns how many deliveries the broker flagged as redelivered:
// duplicates caused by the collector's own connection loss, not by the publisher.
func (c *Collector) Redelivered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, d := range c.deliveries {
		if d.Redelivered {
			n++
		}
	}
	return n
}

// Snapshot returns the deliveries so far, in arrival order.
func (c *Collector) Snapshot() []amqp.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]amqp.Delivery(nil), c.deliveries...)
}

// OrderInversions counts messages whose first delivery came after a later
// message's first delivery (message ids sort in sending order).
func (c *Collector) OrderInversions() int {
	seen := map[string]bool{}
	var ids []string
	for _, d := range c.Snapshot() {
		if !seen[d.MessageId] {
			seen[d.MessageId] = true
			ids = append(ids, d.MessageId)
		}
	}
	inversions := 0
	for i := 1; i < len(ids); i++ {
		if ids[i] < ids[i-1] {
			inversions++
		}
	}
	return inversions
}
