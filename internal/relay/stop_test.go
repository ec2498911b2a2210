package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/logging/logtest"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
)

// Stopping takes drain_timeout in all: when the drain runs out of time
// (a backlog behind a slow tap) and a subscriber that never reads holds
// output queued, Close lingers only for what is left of drain_timeout, not
// for another drain_timeout on top.
func TestStopTakesDrainTimeoutInAll(t *testing.T) {
	const drainTimeout = 2 * time.Second
	opts := testOptions(t)
	opts.DrainTimeout = drainTimeout
	opts.InboundHWM = 1_000_000
	r, err := New(opts, logtest.ForTest(t), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			r.Close()
		}
	}()
	r.SetTap(func(topics, bodies [][]byte, confirmed bool) Durability {
		time.Sleep(300 * time.Millisecond)
		return nil
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	// A subscriber that takes one message and then nothing: with tiny
	// buffers, the relay's output for it soon waits in libzmq.
	stalled := newSocket(t, zmq.SUB)
	must(t, stalled.SetRcvhwm(1))
	must(t, stalled.SetRcvbuf(4096))
	must(t, stalled.SetSubscribe(""))
	must(t, stalled.Connect(opts.Outbound[0]))

	pub := newSocket(t, zmq.PUB)
	must(t, pub.SetSndhwm(0))
	must(t, pub.Connect(opts.Inbound[0]))
	// Enough for several drain_timeouts at 256 messages per slow batch.
	body := fedmsgBody(testTopic, 1, `, "pad": "`+strings.Repeat("x", 4<<10)+`"`)
	deadline := time.Now().Add(30 * time.Second)
	for r.backlog.Load() < 256 { // connected, and the loop is behind
		for range 100 {
			_, _ = pub.SendMessage(testTopic, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backlog built up; last batch %d", r.backlog.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3000 {
		_, _ = pub.SendMessage(testTopic, body)
	}
	stopped := time.Now()
	drained := stopRun(t, cancel, done)
	r.Close()
	closed = true
	took := time.Since(stopped)
	t.Logf("drain %s, drain and close %s (drain_timeout %s)", drained, took, drainTimeout)
	if drained < drainTimeout*9/10 {
		t.Fatalf("the drain took %s: it did not run out of time, so this proves nothing", drained)
	}
	// Twice drain_timeout is what lingering in full on top would take; a
	// loaded machine gets half a drain_timeout of slack.
	if took > drainTimeout*3/2 {
		t.Errorf("stopping took %s, want about drain_timeout (%s)", took, drainTimeout)
	}
}

// stopRun cancels Run, waits (at most 30 s) for it to return without error,
// and returns how long that took.
func stopRun(t *testing.T, cancel func(), done <-chan error) time.Duration {
	t.Helper()
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	return time.Since(stopped)
}
