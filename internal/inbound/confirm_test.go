package inbound

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// listenConfirm listens on one producer and one confirm endpoint.
func listenConfirm(t *testing.T, mutate func(*Options)) (s *Server, confirm string, rec *testutil.Events) {
	t.Helper()
	confirm = fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	s, _, rec = listen(t, func(o *Options) {
		o.ConfirmEndpoints = []string{confirm}
		if mutate != nil {
			mutate(o)
		}
	})
	return s, confirm, rec
}

// answer plays the forwarding loop until the test ends: it takes messages
// and answers each confirm message with reply(m), after Release as the
// transport does. Producers' messages are counted.
func answer(t *testing.T, s *Server, reply func(Message) []byte) *answerer {
	a := &answerer{}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]Message, 16)
		var texts [16][]byte
		var tos [16]ReplyTo
		for {
			select {
			case <-quit:
				return
			default:
			}
			k := s.Take(buf, 1<<20)
			replies := 0
			for _, m := range buf[:k] {
				if to, ok := m.ReplyTo(); ok {
					tos[replies], texts[replies] = to, reply(m)
					replies++
				} else {
					a.mu.Lock()
					a.producers++
					a.mu.Unlock()
				}
			}
			s.Release(buf[:k])
			for i := range replies {
				start := time.Now()
				s.Reply(tos[i], texts[i])
				a.mu.Lock()
				a.slowestReply = max(a.slowestReply, time.Since(start))
				a.mu.Unlock()
			}
			if k == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { close(quit); <-done })
	return a
}

type answerer struct {
	mu           sync.Mutex
	producers    int
	slowestReply time.Duration
}

func (a *answerer) producerMessages() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.producers
}

func (a *answerer) slowest() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.slowestReply
}

// pyzmq DEALER (pipelining) and REQ (lock-step, with its delimiter) clients
// get one reply per message, in order; REQ's delimiter is stripped from its
// messages and put back on its replies.
func TestPyzmqConfirmClients(t *testing.T) {
	py := testutil.Python(t)
	s, confirm, rec := listenConfirm(t, nil)
	a := answer(t, s, func(m Message) []byte {
		if m.Frames != 2 || !bytes.HasPrefix(m.Body, []byte("{")) {
			return []byte(fmt.Sprintf("refused:%d frames %q", m.Frames, m.Body))
		}
		return []byte("ok " + string(m.Body))
	})
	script := `
import json, sys, zmq
ctx = zmq.Context()
out = {}
for kind in ("DEALER", "REQ"):
    s = ctx.socket(getattr(zmq, kind))
    s.rcvtimeo = 10000
    s.connect(sys.argv[1])
    bodies = [b"bad" if i % 7 == 3 else b'{"i": %d}' % i for i in range(50)]
    replies = []
    for b in bodies:
        s.send_multipart([b"topic", b])
        if kind == "REQ":
            replies.append(s.recv_multipart())
    if kind == "DEALER":
        replies = [s.recv_multipart() for _ in bodies]
    out[kind] = [[f.decode() for f in r] for r in replies]
    s.close()
print(json.dumps(out))
`
	out, err := exec.Command(py, "-c", script, confirm).CombinedOutput()
	if err != nil {
		t.Fatalf("clients: %v\n%s", err, out)
	}
	var got map[string][][]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("clients' output: %v\n%s", err, out)
	}
	for _, kind := range []string{"DEALER", "REQ"} {
		if len(got[kind]) != 50 {
			t.Fatalf("%s: %d replies, want 50: %q", kind, len(got[kind]), got[kind])
		}
		for i, r := range got[kind] {
			want := fmt.Sprintf(`ok {"i": %d}`, i)
			if i%7 == 3 {
				want = `refused:2 frames "bad"`
			}
			if len(r) != 1 || r[0] != want {
				t.Errorf("%s reply %d = %q, want [%q]", kind, i, r, want)
			}
		}
	}
	if n := a.producerMessages(); n != 0 {
		t.Errorf("%d confirm messages were taken as producers'", n)
	}
	waitFor(t, "both clients to leave", func() bool { return rec.Count(endpoint.Disconnected, ReasonPeerClosed) == 2 })
	for _, e := range rec.All() {
		if !e.Confirm {
			t.Errorf("event %+v not marked as a confirm endpoint's", e)
		}
	}
	waitFor(t, "the budget to be released", func() bool { return s.Held() == 0 })
}

// A confirm endpoint takes only DEALER and REQ peers, and a REQ message
// without its delimiter is a protocol error.
func TestConfirmPeerTypes(t *testing.T) {
	s, confirm, rec := listenConfirm(t, nil)
	answer(t, s, func(Message) []byte { return []byte("ok") })
	rawPeerAs(t, confirm, "PUB")
	waitFor(t, "the PUB's handshake failure", func() bool { return rec.Count(endpoint.HandshakeFailed, ReasonHandshake) == 1 })
	req := rawPeerAs(t, confirm, "REQ")
	req.Write(append([]byte{zmtp.FlagMore, 1}, 't'))
	req.Write(append([]byte{0, 2}, "{}"...))
	waitFor(t, "the REQ's protocol error", func() bool { return rec.Count(endpoint.Disconnected, ReasonProtocol) == 1 })
}

// Replies never wait for the client: one that does not read them is cut
// off once its socket and its reply queue are full (or a write times out),
// counted as a dropped reply and a disconnect.
func TestConfirmReplyToStalledClient(t *testing.T) {
	s, confirm, rec := listenConfirm(t, func(o *Options) { o.HeartbeatInterval = 200 * time.Millisecond })
	big := bytes.Repeat([]byte("r"), 256<<10) // fills the socket buffers in a few replies
	a := answer(t, s, func(Message) []byte { return big })
	stalled := rawPeerAs(t, confirm, "DEALER") // sends, never reads
	msg := append(append([]byte{zmtp.FlagMore, 1}, 't'), append([]byte{0, 2}, "{}"...)...)
	go func() {
		for stalled.SetWriteDeadline(time.Now().Add(10*time.Second)) == nil {
			if _, err := stalled.Write(msg); err != nil {
				return // cut off
			}
			time.Sleep(time.Millisecond)
		}
	}()
	waitFor(t, "the stalled client's cut-off", func() bool { return rec.Count(endpoint.Disconnected, ReasonStalled) == 1 })
	if slowest := a.slowest(); slowest > 50*time.Millisecond {
		t.Errorf("a Reply took %v: it must never wait for the client", slowest)
	}
	waitFor(t, "the budget to be released", func() bool { return s.Held() == 0 })
}

// The reply to a client that left before it is dropped and counted.
func TestConfirmReplyAfterClientLeft(t *testing.T) {
	s, confirm, rec := listenConfirm(t, nil)
	c := rawPeerAs(t, confirm, "DEALER")
	c.Write(append([]byte{zmtp.FlagMore, 1}, 't'))
	c.Write(append([]byte{0, 2}, "{}"...))
	var m [1]Message
	waitFor(t, "the message", func() bool { return s.Take(m[:], 1<<20) == 1 })
	to, ok := m[0].ReplyTo()
	if !ok {
		t.Fatal("a confirm message has no ReplyTo")
	}
	s.Release(m[:])
	c.Close()
	waitFor(t, "the client to leave", func() bool { return rec.Count(endpoint.Disconnected, "") == 1 })
	s.Reply(to, []byte("ok"))
	if n := rec.Count(endpoint.ReplyDropped, ReasonPeerClosed); n != 1 {
		t.Errorf("%d replies counted as dropped, want 1: %+v", n, rec.All())
	}
}

// Endless multipart and oversize messages on a confirm endpoint cut their
// senders off within the one budget, while a DEALER client is answered.
func TestConfirmHostileClients(t *testing.T) {
	const budget = 2 << 20
	shared := membudget.New(budget)
	s, confirm, rec := listenConfirm(t, func(o *Options) { o.Budget = shared; o.MaxMessageBytes = 256 << 10 })
	answer(t, s, func(Message) []byte { return []byte("ok") })
	stopSampling := testutil.SamplePeak(time.Millisecond, shared.Used)
	frame := bytes.Repeat([]byte("m"), 60<<10)
	var wg sync.WaitGroup
	for i := range 10 {
		c := rawPeerAs(t, confirm, "DEALER")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 1 { // one frame over the limit
				c.Write(frameHeader(0, 300<<10))
				io.Copy(io.Discard, c)
				return
			}
			for c.SetWriteDeadline(time.Now().Add(10*time.Second)) == nil {
				if _, err := c.Write(append(frameHeader(zmtp.FlagMore, len(frame)), frame...)); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if peak := stopSampling(); peak > budget {
		t.Errorf("held %d bytes at peak, budget %d", peak, budget)
	}
	waitFor(t, "10 disconnects", func() bool {
		return rec.Count(endpoint.Disconnected, ReasonOversize)+rec.Count(endpoint.Disconnected, ReasonOverShare) == 10
	})
	good := rawPeerAs(t, confirm, "DEALER")
	good.Write(append([]byte{zmtp.FlagMore, 1}, 't'))
	good.Write(append([]byte{0, 2}, "{}"...))
	good.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(good)
	var hello [zmtp.GreetingSize]byte
	if _, err := io.ReadFull(r, hello[:]); err != nil {
		t.Fatal(err)
	}
	for {
		flags, n, err := zmtp.ReadHeader(r)
		if err != nil {
			t.Fatalf("good client: %v", err)
		}
		body := make([]byte, n)
		io.ReadFull(r, body)
		if flags&zmtp.FlagCommand == 0 {
			if string(body) != "ok" || flags&zmtp.FlagMore != 0 {
				t.Errorf("good client's reply %q flags %#x, want ok", body, flags)
			}
			break
		}
	}
}
