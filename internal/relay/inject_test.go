package relay

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/logging/logtest"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/wire"
)

// tapRecorder keeps what a tap saw.
type tapRecorder struct {
	mu        sync.Mutex
	calls     int
	seen      []string        // "topic body"
	confirmed map[string]bool // "topic body": its batch was flagged confirmed
}

func (rec *tapRecorder) tap(topics, bodies [][]byte, confirmed bool) Durability {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(topics) == 0 || len(topics) != len(bodies) {
		panic(fmt.Sprintf("tap called with %d topics and %d bodies", len(topics), len(bodies)))
	}
	if rec.confirmed == nil {
		rec.confirmed = map[string]bool{}
	}
	rec.calls++
	for i := range topics {
		m := string(topics[i]) + " " + string(bodies[i])
		rec.seen = append(rec.seen, m)
		rec.confirmed[m] = confirmed
	}
	return nil
}

// batchConfirmed reports whether the tap saw m, and whether in a batch
// flagged confirmed.
func (rec *tapRecorder) batchConfirmed(m string) (seen, confirmed bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	confirmed, seen = rec.confirmed[m]
	return seen, confirmed
}

func (rec *tapRecorder) snapshot() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.seen...)
}

// Messages from the relay's injector are published like any other but never
// reach the tap (they came from the AMQP bridge: no loop); inbound ones reach
// it in order. A stopped injector refuses further messages.
func TestInjectedMessagesBypassTheTap(t *testing.T) {
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	opts := testOptions(t)
	opts.Confirm, opts.Inject = []string{confirm}, true
	var rec tapRecorder
	tr := runRelay(t, opts, logtest.ForTest(t), func(r *Relay) { r.SetTap(rec.tap, nil) })
	inj, err := tr.NewInjector()
	if err != nil {
		t.Fatal(err)
	}

	sub := newSocket(t, zmq.SUB)
	must(t, sub.SetSubscribe(""))
	must(t, sub.Connect(tr.outbound))
	dealer := newSocket(t, zmq.DEALER)
	must(t, dealer.SetRcvtimeo(10*time.Second))
	must(t, dealer.Connect(confirm))
	send := func(body []byte) {
		t.Helper()
		if _, err := dealer.SendMessage(testTopic, body); err != nil {
			t.Fatal(err)
		}
		if reply, err := dealer.Recv(0); err != nil || reply != "ok" {
			t.Fatalf("reply %q, %v; want ok", reply, err)
		}
	}
	// The subscriber may join late (PUB/SUB): probe until it sees one.
	must(t, sub.SetRcvtimeo(50*time.Millisecond))
	probe := fedmsgBody(testTopic, 0, `, "probe": true`)
	for joined := false; !joined; {
		send(probe)
		_, err := sub.RecvMessageBytes(0)
		joined = err == nil
	}

	const each = 50
	var wantTapped, wantPublished []string
	for i := 1; i <= each; i++ {
		inbound, injected := fedmsgBody(testTopic, i, `, "via": "inbound"`), fedmsgBody(testTopic, i, `, "via": "inject"`)
		send(inbound)
		if err := inj.Send([]byte(testTopic), injected); err != nil {
			t.Fatalf("inject %d: %v", i, err)
		}
		wantTapped = append(wantTapped, testTopic+" "+string(inbound))
		wantPublished = append(wantPublished, string(inbound), string(injected))
	}
	must(t, sub.SetRcvtimeo(10*time.Second))
	published := map[string]bool{}
	for len(published) < len(wantPublished) {
		m, err := sub.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("subscriber got %d of %d messages: %v", len(published), len(wantPublished), err)
		}
		if string(m[1]) != string(probe) {
			published[string(m[1])] = true
		}
	}
	for _, body := range wantPublished {
		if !published[body] {
			t.Errorf("not published: %s", body)
		}
	}
	var tapped []string
	for _, m := range rec.snapshot() {
		if !strings.Contains(m, `"probe"`) {
			tapped = append(tapped, m)
		}
	}
	if strings.Join(tapped, "\n") != strings.Join(wantTapped, "\n") {
		t.Errorf("the tap saw %d messages, want exactly the %d inbound ones in order:\n%s", len(tapped), len(wantTapped), strings.Join(tapped, "\n"))
	}

	inj.Stop()
	if err := inj.Send([]byte(testTopic), fedmsgBody(testTopic, 99, "")); !errors.Is(err, ErrInjectorStopped) {
		t.Errorf("Send after Stop: %v, want ErrInjectorStopped", err)
	}
}

// The tap is told which batches hold a message from a confirming client
// (who is answered "ok" once the tap returns, so the bridge waits for its
// spool write) and which hold only PUB producers' (fire and forget).
func TestTapKnowsConfirmedBatches(t *testing.T) {
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	opts := testOptions(t)
	opts.Confirm = []string{confirm}
	var rec tapRecorder
	tr := runRelay(t, opts, logtest.ForTest(t), func(r *Relay) { r.SetTap(rec.tap, nil) })

	pub := newSocket(t, zmq.PUB)
	must(t, pub.Connect(tr.inbound))
	// PUB joins late: send until the tap saw one.
	var fromPUB string
	testutil.WaitFor(t, 10*time.Second, "a PUB message at the tap", func() bool {
		body := fedmsgBody(testTopic, 1, `, "via": "pub"`)
		if _, err := pub.SendMessage(testTopic, body); err != nil {
			t.Fatal(err)
		}
		fromPUB = testTopic + " " + string(body)
		time.Sleep(10 * time.Millisecond)
		seen, _ := rec.batchConfirmed(fromPUB)
		return seen
	})
	if _, confirmed := rec.batchConfirmed(fromPUB); confirmed {
		t.Errorf("a batch of PUB messages only was flagged confirmed")
	}

	dealer := newSocket(t, zmq.DEALER)
	must(t, dealer.SetRcvtimeo(10*time.Second))
	must(t, dealer.Connect(confirm))
	body := fedmsgBody(testTopic, 2, `, "via": "confirm"`)
	if _, err := dealer.SendMessage(testTopic, body); err != nil {
		t.Fatal(err)
	}
	if reply, err := dealer.Recv(0); err != nil || reply != "ok" {
		t.Fatalf("reply %q, %v; want ok", reply, err)
	}
	// The tap ran before the reply was sent.
	if seen, confirmed := rec.batchConfirmed(testTopic + " " + string(body)); !seen || !confirmed {
		t.Errorf("confirmed client's message: seen by the tap %v, in a batch flagged confirmed %v; want both", seen, confirmed)
	}
}

// A relay without Options.Inject has no injector.
func TestNoInjectorUnlessConfigured(t *testing.T) {
	tr := startRelay(t, nil)
	if _, err := tr.NewInjector(); err == nil {
		t.Fatal("NewInjector without Options.Inject succeeded")
	}
}

// On shutdown the drain publishes for at most drain_timeout, then refuses
// the rest and logs how many messages it did not publish.
func TestDrainIsBoundedByDrainTimeout(t *testing.T) {
	var logBuf testutil.SyncBuffer
	opts := testOptions(t)
	opts.DrainTimeout = 300 * time.Millisecond
	opts.InboundHWM = 1_000_000
	r, err := New(opts, hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Info}), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A slow tap (a stalled disk under the bridge) makes a backlog build up.
	r.SetTap(func(topics, bodies [][]byte, confirmed bool) Durability {
		time.Sleep(20 * time.Millisecond)
		return nil
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	pub := newSocket(t, zmq.PUB)
	must(t, pub.SetSndhwm(0))
	must(t, pub.Connect(opts.Inbound[0]))
	body := fedmsgBody(testTopic, 1, "")
	// Full batches mean more was waiting behind them: then stop.
	deadline := time.Now().Add(30 * time.Second)
	for full := 0; full < 3; {
		for range 1000 {
			_, _ = pub.SendMessage(testTopic, body)
		}
		if r.backlog.Load() == 256 {
			full++
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backlog built up; last batch %d", r.backlog.Load())
		}
	}
	// Then well over drain_timeout's worth behind them (at 20 ms a batch
	// of 256, 20,000 messages take 1.5 s): a backlog of only a few
	// thousand was once drained within the 300 ms.
	for range 20_000 {
		_, _ = pub.SendMessage(testTopic, body)
	}
	took := stopRun(t, cancel, done)
	m := regexp.MustCompile(`drain_timeout passed.* published=(\d+) not_published=(\d+)`).FindStringSubmatch(logBuf.String())
	if m == nil {
		t.Fatalf("no drain_timeout line (drain took %s):\n%s", took, logBuf.String())
	}
	if left, _ := strconv.Atoi(m[2]); left == 0 {
		t.Errorf("not_published=0: the drain did not run out of time:\n%s", logBuf.String())
	}
	t.Logf("drain took %s: published %s, not published %s", took, m[1], m[2])
}

// refuseAll is a Verifier that refuses every signature.
type refuseAll struct{}

func (refuseAll) Verify(string, []byte) error { return errors.New("no valid signature") }

// Send answers once the forwarding loop decided, per message: nil for a
// published message (a subscriber gets it), a RefusedError with the relay's
// drop reason for one it refused, ErrInjectorStopped once the relay
// stopped. Injected messages skip signature validation, inbound ones do not.
func TestInjectorOutcome(t *testing.T) {
	opts := testOptions(t)
	opts.Inject, opts.MaxMessageBytes = true, 4096
	opts.AllowedTopicPrefixes = []string{"org.fedoraproject.test"}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := New(opts, logtest.ForTest(t), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetCrypto(&Crypto{Verifier: refuseAll{}})
	inj, err := r.NewInjector()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	sub := newSocket(t, zmq.SUB)
	must(t, sub.SetSubscribe(""))
	must(t, sub.Connect(opts.Outbound[0]))
	// The subscriber may join late (PUB/SUB): inject until it sees one.
	must(t, sub.SetRcvtimeo(50*time.Millisecond))
	for joined := false; !joined; {
		if err := inj.Send([]byte(testTopic), fedmsgBody(testTopic, 0, "")); err != nil {
			t.Fatalf("probe: %v", err)
		}
		_, err := sub.RecvMessageBytes(0)
		joined = err == nil
	}
	must(t, sub.SetRcvtimeo(10*time.Second))
	probe := string(fedmsgBody(testTopic, 0, ""))

	const other = "org.centos.test.msg"
	tests := []struct {
		name        string
		topic, body []byte
		refused     string // "" for published
	}{
		{"valid, unsigned", []byte(testTopic), fedmsgBody(testTopic, 1, ""), ""},
		{"topic filtered", []byte(other), fedmsgBody(other, 2, ""), "topic_not_allowed"},
		{"oversize", []byte(testTopic), fedmsgBody(testTopic, 3, `, "pad": "`+strings.Repeat("x", 5000)+`"`), "oversize"},
		{"not JSON", []byte(testTopic), []byte("{"), "body_not_json"},
		{"valid again", []byte(testTopic), fedmsgBody(testTopic, 4, ""), ""},
	}
	checkAnswer := func(how, name string, err error, want string) {
		t.Helper()
		var refused *RefusedError
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %s: %v, want nil", name, how, err)
		case want != "" && (!errors.As(err, &refused) || refused.RefusedReason() != want):
			t.Errorf("%s: %s: %v, want refused: %s", name, how, err, want)
		}
	}
	for _, tt := range tests {
		checkAnswer("Send", tt.name, inj.Send(tt.topic, tt.body), tt.refused)
		if tt.refused == "" {
			m, err := sub.RecvMessageBytes(0)
			for err == nil && string(m[1]) == probe {
				m, err = sub.RecvMessageBytes(0)
			}
			if err != nil || string(m[1]) != string(tt.body) {
				t.Errorf("%s: Send returned nil, but the subscriber got %q, %v", tt.name, m, err)
			}
		}
	}

	// Sent all at once, the same messages get the same answers, in order.
	answers := make([]<-chan error, len(tests))
	for i, tt := range tests {
		answers[i] = inj.SendAsync(tt.topic, tt.body)
	}
	for i, tt := range tests {
		checkAnswer("SendAsync", tt.name, <-answers[i], tt.refused)
	}

	// An inbound message still needs a valid signature.
	pub := newSocket(t, zmq.PUB)
	must(t, pub.Connect(opts.Inbound[0]))
	deadline := time.Now().Add(30 * time.Second)
	for r.stats.dropped[wire.Signature].Value() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("an unsigned inbound message was not refused for its signature")
		}
		_, _ = pub.SendMessage(testTopic, fedmsgBody(testTopic, 5, ""))
		time.Sleep(10 * time.Millisecond)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := inj.Send([]byte(testTopic), fedmsgBody(testTopic, 6, "")); !errors.Is(err, ErrInjectorStopped) {
		t.Errorf("Send after the relay stopped: %v, want ErrInjectorStopped", err)
	}
	if err := <-inj.SendAsync([]byte(testTopic), fedmsgBody(testTopic, 7, "")); !errors.Is(err, ErrInjectorStopped) {
		t.Errorf("SendAsync after the relay stopped: %v, want ErrInjectorStopped", err)
	}
}
