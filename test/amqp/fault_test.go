package amqp

import (
	"fmt"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
)

// TestFaults streams 50,000 messages from a libzmq DEALER through the
// relay's confirmed inbound (windows of acknowledged messages, so ZeroMQ
// itself drops nothing and what is measured is the bridge) while the broker
// is stopped for several seconds and started again, while the relay is
// restarted on the same spool, and while it is killed (SIGKILL) and started
// again on it. Nothing may be lost; duplicates are reported.
func TestFaults(t *testing.T) {
	broker := amqptest.Require(t)
	const (
		total  = 50000
		window = 250
		pause  = 40 * time.Millisecond // ~6,000 msg/s: the stream outlasts the fault
	)
	cases := []struct {
		name  string
		fault func(t *testing.T, r *relay)
	}{
		{"broker_restart", func(t *testing.T, _ *relay) { broker.Restart(t, 3*time.Second) }},
		{"relay_restart", func(t *testing.T, r *relay) { r.restart(t) }},
		{"relay_kill9", func(t *testing.T, r *relay) { r.kill(t) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := bridgeQueue(t, broker)
			r := startRelay(t, broker)
			producer := newConfirmedProducer(t, r.Confirm)

			// The producer streams in its own goroutine; the fault happens in
			// the test's goroutine once a tenth of the stream is acknowledged.
			faultAt := make(chan struct{})
			streamed := make(chan error, 1)
			producing := make(chan struct{})
			t.Cleanup(func() { <-producing }) // before the producer's socket closes
			start := time.Now()
			go func() {
				defer close(producing)
				streamed <- stream(producer, tc.name, total, window, pause, faultAt, start.Add(90*time.Second))
			}()
			select {
			case <-faultAt:
				tc.fault(t, r)
			case err := <-streamed:
				t.Fatalf("stream ended before the fault: %v", err)
			}
			if err := <-streamed; err != nil {
				t.Fatalf("producer: %v", err)
			}
			elapsed := time.Since(start)

			// Wait until everything arrived, or until nothing more arrives.
			last, lastChange := -1, time.Now()
			for {
				unique, _ := got.Counts()
				if unique >= total || time.Since(lastChange) > 20*time.Second {
					break
				}
				if unique != last {
					last, lastChange = unique, time.Now()
				}
				time.Sleep(100 * time.Millisecond)
			}
			unique, duplicates := got.Counts()
			resentByBridge := r.metric(t, "fedmsg_relay_amqp_duplicates_resent_total")
			t.Logf("%s: %d sent (acknowledged by the relay, %d windows sent again, slowest acknowledged window %s) in %s; "+
				"broker: %d distinct, lost %d, duplicates %d (%v published again by the bridge since the relay's last start; "+
				"%d flagged redelivered to the test's consumer; the rest delivered again to the consumer after the broker "+
				"restart without the flag, or in windows the producer sent again); first-delivery order inversions %d",
				tc.name, total, producer.resent, producer.slowest.Round(time.Millisecond), elapsed.Round(time.Millisecond),
				unique, total-unique, duplicates, resentByBridge, got.Redelivered(), got.OrderInversions())
			if unique != total {
				t.Errorf("lost %d of %d messages", total-unique, total)
			}
		})
	}
}

// stream sends total messages in acknowledged windows, closing faultAt once
// a tenth of them is acknowledged.
func stream(p *confirmedProducer, name string, total, window int, pause time.Duration, faultAt chan<- struct{}, deadline time.Time) error {
	for sent := 0; sent < total; sent += window {
		batch := make([]message, window)
		for i := range batch {
			n := sent + i
			batch[i] = message{
				topic: "org.fedoraproject.prod.e2e.fault",
				msgID: fmt.Sprintf("2026-fault-%s-%06d", name, n),
				msg:   fmt.Sprintf(`{"n": %d}`, n),
			}
		}
		if err := p.send(batch, deadline); err != nil {
			return err
		}
		if sent == total/10 {
			close(faultAt)
		}
		time.Sleep(pause)
	}
	return nil
}
