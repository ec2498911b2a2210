package relay

import (
	"fmt"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/logging/logtest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
)

// gate is a Durability the test completes by hand, as a slow disk would.
type gate struct {
	done   chan struct{}
	failed string
}

func newGate() *gate                  { return &gate{done: make(chan struct{})} }
func (g *gate) Done() <-chan struct{} { return g.done }
func (g *gate) Failed() string        { return g.failed }

func (g *gate) complete(failed string) {
	g.failed = failed
	close(g.done)
}

func failedGate(failed string) *gate {
	g := newGate()
	g.complete(failed)
	return g
}

// gatedTap returns, for each confirmed batch, the next gate of next.
func gatedTap(next chan *gate) Tap {
	return func(_, _ [][]byte, confirmed bool) Durability {
		if !confirmed {
			return nil
		}
		return <-next
	}
}

// durableBus is a relay with a gated tap, a listener, a PUB producer and a
// DEALER confirming client.
type durableBus struct {
	tr     *testRelay
	next   chan *gate // the Durability of each confirmed batch, in turn
	sub    *zmq.Socket
	pub    *zmq.Socket
	dealer *zmq.Socket
	n      int
}

func startDurableBus(t *testing.T, engine string) *durableBus {
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	opts := testOptions(t)
	opts.Confirm = []string{confirm}
	opts.InboundEngine, opts.BufferBytes, opts.MaxInboundConnections = engine, 16<<20, 100
	d := &durableBus{next: make(chan *gate, 4)}
	d.tr = runRelay(t, opts, logtest.ForTest(t), func(r *Relay) {
		r.SetTap(gatedTap(d.next), []string{"budget", "spool_error"})
	})
	d.sub = newSocket(t, zmq.SUB)
	must(t, d.sub.SetSubscribe(""))
	must(t, d.sub.Connect(d.tr.outbound))
	d.pub = newSocket(t, zmq.PUB)
	must(t, d.pub.Connect(d.tr.inbound))
	d.dealer = newSocket(t, zmq.DEALER)
	must(t, d.dealer.Connect(confirm))
	// PUB and SUB join late: publish until the listener hears one.
	must(t, d.sub.SetRcvtimeo(50*time.Millisecond))
	testutil.WaitFor(t, 10*time.Second, "the listener to hear the producer", func() bool {
		d.publish(t, "warm-up")
		_, err := d.sub.RecvMessage(0)
		return err == nil
	})
	must(t, d.sub.SetRcvtimeo(300*time.Millisecond))
	for { // what else the warm-up sent
		if _, err := d.sub.RecvMessage(0); err != nil {
			break
		}
	}
	return d
}

func (d *durableBus) body(name string) string {
	d.n++
	return string(fedmsgBody(testTopic, d.n, fmt.Sprintf(`, "name": %q`, name)))
}

func (d *durableBus) publish(t *testing.T, name string) {
	if _, err := d.pub.SendMessage(testTopic, d.body(name)); err != nil {
		t.Fatal(err)
	}
}

// confirmed sends a confirming client's message whose batch the tap makes
// durable with g.
func (d *durableBus) confirmed(t *testing.T, name string, g *gate) {
	d.next <- g
	if _, err := d.dealer.SendMessage(testTopic, d.body(name)); err != nil {
		t.Fatal(err)
	}
}

// heard returns the names the listener receives until it is quiet for
// 300 ms.
func (d *durableBus) heard(t *testing.T) []string {
	var names []string
	for {
		frames, err := d.sub.RecvMessage(0)
		if err != nil {
			return names
		}
		_, name, _ := strings.Cut(frames[1], `"name": "`)
		name, _, _ = strings.Cut(name, `"`)
		names = append(names, name)
	}
}

// replies returns the replies the client gets within wait.
func (d *durableBus) replies(t *testing.T, wait time.Duration) []string {
	must(t, d.dealer.SetRcvtimeo(wait))
	var got []string
	for {
		reply, err := d.dealer.Recv(0)
		if err != nil {
			return got
		}
		got = append(got, reply)
		must(t, d.dealer.SetRcvtimeo(100*time.Millisecond))
	}
}

// With the Go engine, a confirming client's reply waits until its batch is
// durable, while the bus goes on: its message and later producers'
// messages are published at once. Replies keep their batches' order even
// when a later batch is durable first; a batch that failed once published
// is refused, one the tap did not keep is refused and not published, and
// both are counted.
func TestGoEngineRepliesWaitForDurability(t *testing.T) {
	d := startDurableBus(t, transport.EngineGo)
	slow, fast := newGate(), newGate()
	d.confirmed(t, "c1", slow)
	if got := fmt.Sprint(d.heard(t)); got != "[c1]" {
		t.Fatalf("while c1's batch is not durable the listener heard %s, want [c1]: the bus waited", got)
	}
	for i := range 3 {
		d.publish(t, fmt.Sprintf("p%d", i))
	}
	if got := fmt.Sprint(d.heard(t)); got != "[p0 p1 p2]" {
		t.Fatalf("while c1's batch is not durable the listener heard %s, want [p0 p1 p2]: the bus waited", got)
	}
	d.confirmed(t, "c2", fast)
	if got := fmt.Sprint(d.heard(t)); got != "[c2]" {
		t.Fatalf("the listener heard %s, want [c2]", got)
	}
	fast.complete("")
	if got := d.replies(t, 300*time.Millisecond); len(got) > 0 {
		t.Fatalf("replies %q before c1's batch was durable: answered out of order or too early", got)
	}
	slow.complete("spool_error")
	if got := fmt.Sprint(d.replies(t, 5*time.Second)); got != "[refused:spool_error ok]" {
		t.Fatalf("replies %s, want c1's refusal (its write failed) then c2's ok", got)
	}
	d.confirmed(t, "c3", failedGate("budget"))
	d.publish(t, "p3")
	if got := fmt.Sprint(d.replies(t, 5*time.Second)); got != "[refused:spool_budget]" {
		t.Fatalf("replies %s, want c3's refusal (the tap did not keep it)", got)
	}
	if got := fmt.Sprint(d.heard(t)); got != "[p3]" {
		t.Errorf("the listener heard %s, want [p3]: a message the tap did not keep was published", got)
	}
	d.tr.waitMetric(t, `fedmsg_relay_confirm_unspooled_total{reason="spool_error"}`, "1")
	d.tr.waitMetric(t, `fedmsg_relay_confirm_unspooled_total{reason="budget"}`, "1")
}

// With libzmq, which answers confirming clients as it publishes, the loop
// waits for the batch to be durable before it publishes it: the trade-off
// relay.yaml(5) states.
func TestLibzmqEngineWaitsForDurability(t *testing.T) {
	d := startDurableBus(t, transport.EngineLibzmq)
	slow := newGate()
	t.Cleanup(func() { // a failed test must not leave the loop waiting
		select {
		case <-slow.done:
		default:
			slow.complete("")
		}
	})
	d.confirmed(t, "c1", slow)
	time.Sleep(100 * time.Millisecond) // the loop takes c1 alone
	d.publish(t, "p0")
	if got := d.heard(t); len(got) > 0 {
		t.Fatalf("the listener heard %q before c1's batch was durable", got)
	}
	if got := d.replies(t, 100*time.Millisecond); len(got) > 0 {
		t.Fatalf("replies %q before c1's batch was durable", got)
	}
	slow.complete("")
	if got := fmt.Sprint(d.replies(t, 5*time.Second)); got != "[ok]" {
		t.Fatalf("replies %s, want [ok]", got)
	}
	if got := fmt.Sprint(d.heard(t)); got != "[c1 p0]" {
		t.Fatalf("the listener heard %s, want [c1 p0]", got)
	}
	d.confirmed(t, "c2", failedGate("spool_error"))
	if got := fmt.Sprint(d.replies(t, 5*time.Second)); got != "[refused:spool_error]" {
		t.Fatalf("replies %s, want c2's refusal", got)
	}
	if got := d.heard(t); len(got) > 0 {
		t.Errorf("the listener heard %q: a message that is not durable was published", got)
	}
	d.tr.waitMetric(t, `fedmsg_relay_confirm_unspooled_total{reason="spool_error"}`, "1")
}
