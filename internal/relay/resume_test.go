package relay

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// produce connects a producer with an unlimited queue, as fedmsg's are, and
// sends n messages once the relay's subscription reached it (an XPUB tells;
// a PUB would drop until then).
func produce(t *testing.T, inbound string, n int) {
	t.Helper()
	pub := newSocket(t, zmq.XPUB)
	must(t, pub.SetSndhwm(0))
	must(t, pub.SetRcvtimeo(20*time.Second))
	must(t, pub.Connect(inbound))
	if _, err := pub.RecvBytes(0); err != nil {
		t.Fatalf("the relay never subscribed: %v", err)
	}
	for i := range n {
		topic := "org.fedoraproject.test.resume"
		if _, err := pub.SendMessage(topic, fmt.Sprintf(`{"topic":%q,"i":%d}`, topic, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func subscriber(t *testing.T, outbound string) *zmq.Socket {
	sub := newSocket(t, zmq.SUB)
	must(t, sub.SetSubscribe("org.fedoraproject.test.resume"))
	must(t, sub.SetRcvtimeo(20*time.Second))
	must(t, sub.Connect(outbound))
	return sub
}

// expectAll checks that sub receives messages 0..n-1, in order.
func expectAll(t *testing.T, name string, sub *zmq.Socket, n int) {
	t.Helper()
	for i := range n {
		frames, err := sub.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("%s: message %d of %d: %v", name, i, n, err)
		}
		if want := fmt.Sprintf(`"i":%d}`, i); len(frames) != 2 || string(frames[1][len(frames[1])-len(want):]) != want {
			t.Fatalf("%s: message %d is %q", name, i, frames)
		}
	}
}

func TestResumeGateHoldsUntilListenersSubscribe(t *testing.T) {
	const n = 200
	tr := startRelay(t, func(o *Options) { o.Resume = ResumeOptions{Subscriptions: 2, Hold: time.Minute} })
	first := subscriber(t, tr.outbound)
	produce(t, tr.inbound, n)
	// One listener of two is back: the relay receives nothing and holds.
	time.Sleep(300 * time.Millisecond) // a chance to publish too early; not an assertion by itself
	if got := tr.metric(t, `fedmsg_relay_resume_opened{reason="subscribed"}`); got != "0" {
		t.Fatalf("gate opened with one of two listeners back")
	}
	second := subscriber(t, tr.outbound)
	expectAll(t, "first listener", first, n)
	expectAll(t, "second listener", second, n)
	tr.waitMetric(t, `fedmsg_relay_resume_opened{reason="subscribed"}`, "1")
	if held, _ := strconv.ParseFloat(tr.metric(t, "fedmsg_relay_resume_held_seconds"), 64); held < 0.3 {
		t.Errorf("held %vs, want at least the 0.3s the second listener took", held)
	}
}

func TestResumeGateOpensAtHoldForAListenerGoneForGood(t *testing.T) {
	const n = 200
	start := time.Now()
	tr := startRelay(t, func(o *Options) { o.Resume = ResumeOptions{Subscriptions: 2, Hold: 1500 * time.Millisecond} })
	only := subscriber(t, tr.outbound)
	produce(t, tr.inbound, n)
	expectAll(t, "the listener that came back", only, n)
	tr.waitMetric(t, `fedmsg_relay_resume_opened{reason="resume_hold"}`, "1")
	if time.Since(start) < 1500*time.Millisecond {
		t.Errorf("published after %v, before resume_hold", time.Since(start))
	}
	if got := tr.metric(t, `fedmsg_relay_resume_opened{reason="subscribed"}`); got != "0" {
		t.Errorf("opened as subscribed too: %s", got)
	}
}

func TestResumeGateOffPublishesAtOnce(t *testing.T) {
	tr := startRelay(t, func(o *Options) { o.Resume = ResumeOptions{Subscriptions: 5, Hold: 0} })
	tr.waitMetric(t, `fedmsg_relay_resume_opened{reason="not_needed"}`, "1")
	if held, err := strconv.ParseFloat(tr.metric(t, "fedmsg_relay_resume_held_seconds"), 64); err != nil || held > 0.1 {
		t.Errorf("held %vs (%v) with the gate off", held, err)
	}
}

// A listener flooding the outbound socket with subscriptions (the same
// one, endlessly) neither starves forwarding nor piles up in memory: the
// relay reads them once per batch and libzmq's queues stay bounded.
func TestSubscriptionFloodStarvesNothing(t *testing.T) {
	tr := startRelay(t, nil)
	flood := newSocket(t, zmq.XSUB)
	must(t, flood.SetSndhwm(1000)) // its own queue stays small: RSS shows the relay's
	must(t, flood.Connect(tr.outbound))
	done, sent := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				sent <- n
				return
			default:
			}
			if _, err := flood.SendBytes([]byte("\x01org.fedoraproject.flood"), zmq.DONTWAIT); err == nil {
				n++
			}
		}
	}()
	rssBefore := rssKiB(t)
	start, relayed := time.Now(), 0
	for time.Since(start) < 2*time.Second {
		assertRelays(t, tr) // fails the test if forwarding starves
		relayed++
	}
	took := time.Since(start)
	close(done)
	n := <-sent
	grown := rssKiB(t) - rssBefore
	t.Logf("%d subscriptions sent while %d messages went through in %v; RSS grew %d KiB", n, relayed, took, grown)
	if n < 100000 {
		t.Fatalf("only %d subscriptions sent: not a flood", n)
	}
	if grown > 64*1024 {
		t.Errorf("RSS grew %d KiB under the flood", grown)
	}
}
