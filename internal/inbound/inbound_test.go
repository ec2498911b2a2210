package inbound

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

func listen(t testing.TB, mutate func(*Options)) (*Server, string, *testutil.Events) {
	t.Helper()
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	rec := &testutil.Events{}
	o := Options{Endpoints: []string{ep}, MaxMessageBytes: 64 << 10, Budget: membudget.New(4 << 20),
		MaxConnections: 64, HandshakeTimeout: 2 * time.Second, HeartbeatInterval: 10 * time.Second, Event: rec.Add}
	if mutate != nil {
		mutate(&o)
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s, ep, rec
}

// collect takes messages until want arrived or the deadline passed.
func collect(t *testing.T, s *Server, want int, within time.Duration) []Message {
	t.Helper()
	var got []Message
	buf := make([]Message, 16)
	deadline := time.Now().Add(within)
	for len(got) < want && time.Now().Before(deadline) {
		n := s.Take(buf, 1<<20)
		for _, m := range buf[:n] { // copied: Release reuses their buffers
			c := m
			c.conn, c.held, c.buf = nil, 0, nil
			c.Topic, c.Body = bytes.Clone(m.Topic), bytes.Clone(m.Body)
			got = append(got, c)
		}
		s.Release(buf[:n])
		if n == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return got
}

// A real pyzmq PUB connects, sends and closes (the fedmsg-logger pattern of
// Python scripts), and a long-running one keeps sending: every message
// arrives byte for byte, frame counts and sizes as sent.
func TestPyzmqProducers(t *testing.T) {
	py := testutil.Python(t)
	s, ep, rec := listen(t, nil)
	script := `
import sys, time, zmq
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.connect(sys.argv[1])
time.sleep(0.3)  # PUB drops until the subscription arrives
for i in range(int(sys.argv[2])):
    pub.send_multipart([b"org.fedoraproject.test.a", b'{"i": %d, "pad": "%s"}' % (i, b"x" * (i * 97 % 3000))])
pub.send_multipart([b"three", b"frames", b"here"])
pub.send_multipart([b"t", b"b" * 70000])  # over the 64 KiB limit: cut off
pub.close(linger=5000)
ctx.term()
`
	out, err := exec.Command(py, "-c", script, ep, "200").CombinedOutput()
	if err != nil {
		t.Fatalf("producer: %v\n%s", err, out)
	}
	got := collect(t, s, 201, 20*time.Second)
	if len(got) != 201 {
		t.Fatalf("got %d messages, want 201", len(got))
	}
	for i, m := range got[:200] {
		body := fmt.Sprintf(`{"i": %d, "pad": "%s"}`, i, bytes.Repeat([]byte("x"), i*97%3000))
		if string(m.Topic) != "org.fedoraproject.test.a" || string(m.Body) != body || m.Frames != 2 || m.Size != len(m.Topic)+len(body) {
			t.Fatalf("message %d = %q %.40q frames %d size %d", i, m.Topic, m.Body, m.Frames, m.Size)
		}
	}
	if m := got[200]; string(m.Topic) != "three" || string(m.Body) != "frames" || m.Frames != 3 || m.Size != 15 {
		t.Errorf("three-frame message = %q %q frames %d size %d", m.Topic, m.Body, m.Frames, m.Size)
	}
	waitFor(t, "the oversize sender's disconnect", func() bool { return rec.Count(endpoint.Disconnected, ReasonOversize) == 1 })
	waitFor(t, "the budget to be released", func() bool { return s.opts.Budget.Used() == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawPeer does a PUB handshake by hand, for what libzmq would never send.
func rawPeer(t testing.TB, ep string) net.Conn {
	t.Helper()
	return rawPeerAs(t, ep, "PUB")
}

// rawPeerAs does the handshake of a socketType peer by hand.
func rawPeerAs(t testing.TB, ep, socketType string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ep[len("tcp://"):])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var hello bytes.Buffer
	hello.Write(zmtp.Greeting)
	ready := zmtp.ReadyCommand(socketType)
	hello.Write([]byte{zmtp.FlagCommand, byte(len(ready))})
	hello.Write(ready)
	if _, err := c.Write(hello.Bytes()); err != nil {
		t.Fatal(err)
	}
	return c
}

func frameHeader(flags byte, n int) []byte {
	return append([]byte{flags | zmtp.FlagLong}, binary.BigEndian.AppendUint64(nil, uint64(n))...)
}

// Endless multipart from many raw peers, each frame under the limit: the
// listener never holds more than its budget, cuts off each sender as its
// message passes max_message_bytes, and a well-behaved peer still gets
// through.
func TestEndlessMultipartStaysInBudget(t *testing.T) {
	const budget = 2 << 20
	s, ep, rec := listen(t, func(o *Options) { o.Budget = membudget.New(budget); o.MaxMessageBytes = 256 << 10 })
	frame := bytes.Repeat([]byte("m"), 60<<10)
	var wg sync.WaitGroup
	stopSampling := testutil.SamplePeak(time.Millisecond, s.opts.Budget.Used)
	for range 20 {
		c := rawPeer(t, ep)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.SetWriteDeadline(time.Now().Add(10*time.Second)) == nil {
				if _, err := c.Write(append(frameHeader(zmtp.FlagMore, len(frame)), frame...)); err != nil {
					return // cut off
				}
			}
		}()
	}
	wg.Wait()
	if peak := stopSampling(); peak > budget {
		t.Errorf("held %d bytes at peak, budget %d", peak, budget)
	}
	// Each is cut off as its message passes the limit, or evicted earlier
	// for others while the budget is full.
	waitFor(t, "20 disconnects", func() bool {
		return rec.Count(endpoint.Disconnected, ReasonOversize)+rec.Count(endpoint.Disconnected, ReasonOverShare) == 20
	})
	if rec.Count(endpoint.Disconnected, ReasonOversize) == 0 {
		t.Errorf("no oversize disconnect: %+v", rec.All())
	}
	// A good peer after all that.
	c := rawPeer(t, ep)
	c.Write(append([]byte{zmtp.FlagMore, 5}, "topic"...))
	c.Write(append([]byte{0, 4}, "body"...))
	got := collect(t, s, 1, 10*time.Second)
	if len(got) != 1 || string(got[0].Topic) != "topic" || string(got[0].Body) != "body" {
		t.Fatalf("good peer: got %+v", got)
	}
}

// Peers that stall halfway through a message each hold at most their share:
// when the budget is full, a peer within its share evicts one over it, and
// the budget never overflows.
func TestStalledPeersAreEvictedForOthers(t *testing.T) {
	const budget = 1 << 20
	s, ep, rec := listen(t, func(o *Options) { o.Budget = membudget.New(budget); o.MaxMessageBytes = 200 << 10 })
	// Four peers each start a 190 KiB message and stall after most of it.
	for range 4 {
		c := rawPeer(t, ep)
		c.Write(append([]byte{zmtp.FlagMore, 1}, 't'))
		c.Write(append(frameHeader(0, 190<<10), bytes.Repeat([]byte("s"), 180<<10)...))
	}
	waitFor(t, "the stalled peers' bytes", func() bool { return s.Held() > 4*180<<10 })
	// Twelve more peers: shares shrink below what the stalled ones hold.
	for i := range 12 {
		c := rawPeer(t, ep)
		body := fmt.Sprintf("body %d %s", i, bytes.Repeat([]byte("g"), 50<<10))
		c.Write(append([]byte{zmtp.FlagMore, 1}, 'g'))
		c.Write(append(frameHeader(0, len(body)), body...))
	}
	got := collect(t, s, 12, 20*time.Second)
	if len(got) != 12 {
		t.Fatalf("got %d of the good peers' 12 messages; held %d; events %+v", len(got), s.Held(), rec.All())
	}
	if held := s.opts.Budget.Used(); held > budget {
		t.Errorf("held %d > budget %d", held, budget)
	}
	if rec.Count(endpoint.Disconnected, ReasonOverShare) == 0 {
		t.Errorf("no stalled peer was evicted: %+v", rec.All())
	}
}

// PING is answered with PONG carrying the context; garbage and a handshake
// that never finishes are refused and counted.
func TestPingAndHandshakeFailures(t *testing.T) {
	s, ep, rec := listen(t, func(o *Options) { o.HandshakeTimeout = 300 * time.Millisecond })
	c := rawPeer(t, ep)
	ping := []byte("\x04PING\x00\x0aCTX")
	c.Write(append([]byte{zmtp.FlagCommand, byte(len(ping))}, ping...))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 0, 256)
	want := append([]byte{zmtp.FlagCommand, 8}, "\x04PONGCTX"...)
	for !bytes.Contains(buf, want) {
		var b [256]byte
		n, err := c.Read(b[:])
		if err != nil {
			t.Fatalf("no PONG in %q: %v", buf, err)
		}
		buf = append(buf, b[:n]...)
	}
	silent, err := net.Dial("tcp", ep[len("tcp://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage, err := net.Dial("tcp", ep[len("tcp://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	garbage.Write(bytes.Repeat([]byte("GET / HTTP/1.0\r\n"), 8))
	waitFor(t, "two failed handshakes", func() bool { return rec.Count(endpoint.HandshakeFailed, "") == 2 })
	if rec.Count(endpoint.HandshakeFailed, ReasonTimeout) != 1 {
		t.Errorf("events %+v: want one handshake timeout", rec.All())
	}
	if n := rec.Count(endpoint.Disconnected, ""); n != 2 {
		t.Errorf("%d disconnects, want the two failed handshakes", n)
	}
	if s.Connections() != 1 {
		t.Errorf("%d connections, want the pinging one", s.Connections())
	}
}

// A producer that answers the relay's PINGs stays connected however long it
// is idle; one silent for three heartbeat intervals is closed.
func TestHeartbeat(t *testing.T) {
	s, ep, rec := listen(t, func(o *Options) { o.HeartbeatInterval = 250 * time.Millisecond })
	silent := rawPeer(t, ep)
	answering := rawPeer(t, ep)
	go func() { // a libzmq PUB's side: PONG for every PING
		r := bufio.NewReader(answering)
		var greeting [zmtp.GreetingSize]byte
		if _, err := io.ReadFull(r, greeting[:]); err != nil {
			return
		}
		for {
			flags, n, err := zmtp.ReadHeader(r)
			if err != nil {
				return
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			if name, data, _ := zmtp.ParseCommand(body); flags&zmtp.FlagCommand != 0 && name == "PING" {
				pong := zmtp.PongCommand(data)
				answering.Write(append([]byte{zmtp.FlagCommand, byte(len(pong))}, pong...))
			}
		}
	}()
	waitFor(t, "the silent peer's timeout", func() bool { return rec.Count(endpoint.Disconnected, ReasonTimeout) == 1 })
	if _, err := io.ReadAll(silent); err != nil { // closed by the relay: EOF
		t.Errorf("silent peer: %v", err)
	}
	time.Sleep(2 * time.Second) // eight intervals: the answering peer is still there
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections, want the answering peer's", n)
	}
}

// A listening socket systemd passed (socket activation) is adopted for its
// endpoint, and an ipc:// endpoint is a Unix socket: producers reach both.
func TestInheritedAndIPCEndpoints(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd())) // the listener takes ownership, as of systemd's
	if err != nil {
		t.Fatal(err)
	}
	inherited := "tcp://" + l.Addr().String()
	ipc := "ipc://" + t.TempDir() + "/inbound.sock"
	s, _, _ := listen(t, func(o *Options) {
		o.Endpoints = []string{inherited, ipc}
		o.Inherited = map[string]int{inherited: fd}
	})
	c := rawPeer(t, inherited)
	c.Write(append([]byte{zmtp.FlagMore, 1}, 'a'))
	c.Write(append([]byte{0, 1}, '1'))
	u, err := net.Dial("unix", ipc[len("ipc://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ready := zmtp.ReadyCommand("PUB")
	u.Write(append(append(append([]byte{}, zmtp.Greeting...), zmtp.FlagCommand, byte(len(ready))), ready...))
	u.Write([]byte{zmtp.FlagMore, 1, 'b', 0, 1, '2'})
	got := collect(t, s, 2, 10*time.Second)
	if len(got) != 2 {
		t.Fatalf("got %d messages, want one from each endpoint", len(got))
	}
	seen := map[string]string{}
	for _, m := range got {
		seen[string(m.Topic)] = string(m.Body)
	}
	if seen["a"] != "1" || seen["b"] != "2" {
		t.Errorf("got %v", seen)
	}
}

// A producer faster than the forwarding loop (or one held while a restarted
// relay waits for its listeners) is pushed back, not cut off: it is not read
// while the budget is full, for longer than the grace period, and every
// message arrives once the loop takes them.
func TestBackpressureIsNotADisconnect(t *testing.T) {
	const budget, n = 1 << 20, 300
	s, ep, rec := listen(t, func(o *Options) {
		o.Budget, o.MaxMessageBytes, o.HandshakeTimeout = membudget.New(budget), 64<<10, 300*time.Millisecond
	})
	c := rawPeer(t, ep)
	sent := make(chan error, 1)
	go func() {
		var b bytes.Buffer
		for i := range n {
			body := fmt.Sprintf("%d %s", i, bytes.Repeat([]byte("p"), 10<<10))
			b.Write(append([]byte{zmtp.FlagMore, 1}, 't'))
			b.Write(append(frameHeader(0, len(body)), body...))
		}
		_, err := c.Write(b.Bytes())
		sent <- err
	}()
	waitFor(t, "the budget to fill", func() bool { return s.Held() > budget-20<<10 })
	time.Sleep(2500 * time.Millisecond) // past the grace period (1 s)
	if ev := rec.All(); rec.Count(endpoint.Disconnected, "") > 0 {
		t.Fatalf("disconnected while pushed back: %+v", ev)
	}
	got := collect(t, s, n, 20*time.Second)
	if len(got) != n {
		t.Fatalf("got %d of %d messages", len(got), n)
	}
	for i, m := range got {
		if !bytes.HasPrefix(m.Body, []byte(fmt.Sprintf("%d ", i))) {
			t.Fatalf("message %d is %.10q", i, m.Body)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// Inbound shares the relay's one budget: while another holder (subscribers'
// queues, the bridge's hand-off) has most of it, a producer is read only
// into what is left, past the grace period without a disconnect, and goes
// on once the other holder gives its bytes back.
func TestAnotherHolderLeavesInboundLessRoom(t *testing.T) {
	const limit, other, n = 1 << 20, 800 << 10, 100
	shared := membudget.New(limit)
	if !shared.Reserve(other) {
		t.Fatal("the other holder's reserve failed")
	}
	s, ep, rec := listen(t, func(o *Options) {
		o.Budget, o.MaxMessageBytes, o.HandshakeTimeout = shared, 64<<10, 300*time.Millisecond
	})
	stopSampling := testutil.SamplePeak(time.Millisecond, shared.Used)
	c := rawPeer(t, ep)
	sent := make(chan error, 1)
	go func() {
		var b bytes.Buffer
		for i := range n {
			body := fmt.Sprintf("%d %s", i, bytes.Repeat([]byte("o"), 10<<10))
			b.Write(append([]byte{zmtp.FlagMore, 1}, 't'))
			b.Write(append(frameHeader(0, len(body)), body...))
		}
		_, err := c.Write(b.Bytes())
		sent <- err
	}()
	waitFor(t, "inbound to fill what is left", func() bool { return s.Held() > limit-other-30<<10 })
	time.Sleep(1500 * time.Millisecond) // past the grace period (1 s)
	if held := s.Held(); held > limit-other {
		t.Errorf("inbound holds %d bytes, more than the %d the other holder left", held, limit-other)
	}
	if peak := stopSampling(); peak > limit {
		t.Errorf("the budget held %d bytes at peak, limit %d", peak, limit)
	}
	if ev := rec.All(); rec.Count(endpoint.Disconnected, "") > 0 {
		t.Fatalf("disconnected while the other holder had the room: %+v", ev)
	}
	shared.Release(other)
	got := collect(t, s, n, 20*time.Second)
	if len(got) != n {
		t.Fatalf("got %d of %d messages once the room was given back", len(got), n)
	}
	for i, m := range got {
		if !bytes.HasPrefix(m.Body, []byte(fmt.Sprintf("%d ", i))) {
			t.Fatalf("message %d is %.10q", i, m.Body)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "the budget to be released", func() bool { return shared.Used() == 0 })
}

// A topic waits in the connection's scratch space until its body is read;
// a message whose last frame makes it oversize (its body never stored, the
// message kept for the relay to drop and count) keeps its own topic after
// the next message reuses that space.
func TestOversizeMessageKeepsItsTopic(t *testing.T) {
	s, ep, _ := listen(t, func(o *Options) { o.MaxMessageBytes = 1 << 10 })
	c := rawPeer(t, ep)
	var b bytes.Buffer
	b.Write(append([]byte{zmtp.FlagMore, 5}, "first"...))
	b.Write(append(frameHeader(0, 1020), bytes.Repeat([]byte("x"), 1020)...)) // 1025 bytes in all
	b.Write(append([]byte{zmtp.FlagMore, 6}, "second"...))
	b.Write(append([]byte{0, 4}, "body"...))
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := collect(t, s, 2, 10*time.Second)
	if len(got) != 2 || string(got[0].Topic) != "first" || got[0].Body != nil || got[0].Size != 1025 ||
		string(got[1].Topic) != "second" || string(got[1].Body) != "body" {
		t.Fatalf("got %+v", got)
	}
}
