package outbound

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

func listen(t *testing.T, mutate func(*Options)) (*Server, string, *testutil.Events) {
	t.Helper()
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	rec := &testutil.Events{}
	o := Options{Endpoints: []string{ep}, Budget: membudget.New(8 << 20), MaxMessageBytes: 64 << 10, HWM: 10000,
		MaxConnections: 64, HandshakeTimeout: 2 * time.Second, HeartbeatInterval: 10 * time.Second, Event: rec.Add}
	if mutate != nil {
		mutate(&o)
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(0) })
	return s, ep, rec
}

// peers drives subpeer.py: real libzmq SUB sockets.
type peers struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Scanner
}

func startPeers(t *testing.T) *peers {
	t.Helper()
	cmd := exec.Command(testutil.Python(t), "testdata/subpeer.py")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
		if t.Failed() {
			t.Logf("subpeer.py stderr:\n%s", stderr.String())
		}
	})
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 64<<20)
	return &peers{t: t, in: in, out: sc}
}

func (p *peers) do(format string, args ...any) json.RawMessage {
	p.t.Helper()
	fmt.Fprintf(p.in, format+"\n", args...)
	if !p.out.Scan() {
		p.t.Fatalf("subpeer.py ended: %v", p.out.Err())
	}
	return json.RawMessage(p.out.Bytes())
}

func (p *peers) newSub(id, ep string, heartbeat time.Duration, prefixes ...string) {
	p.do("new %s %s %d", id, ep, heartbeat.Milliseconds())
	for _, pre := range prefixes {
		p.do("sub %s %x", id, pre)
	}
}

// recv returns the topics and bodies socket id received.
func (p *peers) recv(id string, n int, timeout time.Duration) (topics, bodies []string) {
	p.t.Helper()
	var got [][]string
	if err := json.Unmarshal(p.do("recv %s %d %d", id, n, timeout.Milliseconds()), &got); err != nil {
		p.t.Fatal(err)
	}
	for _, m := range got {
		t, _ := hex.DecodeString(m[0])
		b, _ := hex.DecodeString(m[1])
		topics, bodies = append(topics, string(t)), append(bodies, string(b))
	}
	return topics, bodies
}

func publish(s *Server, topics ...string) {
	var ts, bs [][]byte
	for _, t := range topics {
		ts, bs = append(ts, []byte(t)), append(bs, []byte(`{"topic":"`+t+`"}`))
	}
	s.Publish(ts, bs)
}

func waitSubscriptions(t *testing.T, s *Server, want int) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("%d subscriptions", want), func() bool { return s.Subscriptions(0) == want })
}

func TestPrefixSubscriptionsAndUnsubscribe(t *testing.T) {
	s, ep, _ := listen(t, nil)
	p := startPeers(t)
	p.newSub("a", ep, 0, "org.a")
	p.newSub("all", ep, 0, "")
	waitSubscriptions(t, s, 2)

	publish(s, "org.a.x", "org.b.y", "org.a.z")
	if got, _ := p.recv("a", 3, 300*time.Millisecond); strings.Join(got, " ") != "org.a.x org.a.z" {
		t.Errorf(`SUB to "org.a" got %q, want org.a.x org.a.z`, got)
	}
	got, bodies := p.recv("all", 3, 2*time.Second)
	if strings.Join(got, " ") != "org.a.x org.b.y org.a.z" || bodies[1] != `{"topic":"org.b.y"}` {
		t.Errorf(`SUB to "" got %q %q, want all three in order, bodies intact`, got, bodies)
	}

	// Subscriptions are counted with multiplicity, as libzmq's XPUB counts
	// them: a libzmq SUB sends every subscribe but a cancel only when its
	// own count of the prefix reaches 0.
	p.do("sub a %x", "org.c")
	p.do("sub a %x", "org.c")
	waitSubscriptions(t, s, 4)
	p.do("unsub a %x", "org.c")
	p.do("unsub a %x", "org.a")
	waitSubscriptions(t, s, 3)
	publish(s, "org.a.w", "org.c.v")
	if got, _ := p.recv("a", 2, 300*time.Millisecond); strings.Join(got, " ") != "org.c.v" {
		t.Errorf(`after unsubscribing "org.a" and one of two "org.c": got %q, want org.c.v`, got)
	}

	// A subscriber that leaves takes its subscriptions with it.
	p.do("close all")
	waitSubscriptions(t, s, 2)
}

func TestManySubscribersGetEverything(t *testing.T) {
	const subs, n, batch = 40, 3000, 100
	s, ep, _ := listen(t, nil)
	p := startPeers(t)
	for i := range subs {
		p.newSub(fmt.Sprint(i), ep, 0, "")
	}
	waitSubscriptions(t, s, subs)
	for i := 0; i < n; i += batch {
		var topics []string
		for j := range batch {
			topics = append(topics, fmt.Sprintf("org.test.%d", i+j))
		}
		publish(s, topics...)
		// Pace the publisher (each batch written before the next) as the
		// test's point is delivery, not drops.
		testutil.WaitFor(t, 10*time.Second, "subscribers to write their queues", func() bool {
			for _, st := range s.Subscribers() {
				if st.QueuedBytes > 0 {
					return false
				}
			}
			return true
		})
	}
	for i := range subs {
		got, _ := p.recv(fmt.Sprint(i), n, 3*time.Second)
		if len(got) != n || got[0] != "org.test.0" || got[n-1] != fmt.Sprintf("org.test.%d", n-1) {
			t.Fatalf("subscriber %d got %d of %d messages (first %q)", i, len(got), n, got[:min(1, len(got))])
		}
	}
	if d := s.Dropped(); d != [numDrops]uint64{} {
		t.Errorf("dropped %v, want none", d)
	}
	for _, st := range s.Subscribers() {
		if st.Sent != n || st.Dropped != 0 {
			t.Errorf("subscriber %s: sent %d dropped %d, want %d and 0", st.Peer, st.Sent, st.Dropped, n)
		}
	}
	if used, conns := s.budget.Used(), int64(subs)*(connCost+prefixCost); used != conns {
		t.Errorf("budget holds %d bytes with every queue written, want the connections' %d", used, conns)
	}
}

func TestLibzmqHeartbeatingSubscriberStays(t *testing.T) {
	const ivl = 100 * time.Millisecond
	s, ep, rec := listen(t, func(o *Options) { o.HeartbeatInterval = ivl })
	p := startPeers(t)
	p.newSub("hb", ep, ivl, "")
	waitSubscriptions(t, s, 1)
	time.Sleep(15 * ivl) // both sides ping and must answer each other's PINGs
	publish(s, "org.after.idle")
	if got, _ := p.recv("hb", 1, 2*time.Second); len(got) != 1 {
		t.Fatalf("a libzmq SUB with ZMQ_HEARTBEAT_IVL got %q after idling, want the message", got)
	}
	if n := rec.Count(endpoint.Disconnected, ""); n != 0 {
		t.Errorf("%d disconnects while idle with heartbeats on both sides, want 0", n)
	}
}

// rawSub is a SUB peer speaking ZMTP by hand, for what libzmq would never
// send (or never stop reading).
type rawSub struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t *testing.T, ep string, rcvbuf int) *rawSub {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		if rcvbuf > 0 {
			c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		}
		return nil
	}}
	nc, err := d.Dial("tcp", strings.TrimPrefix(ep, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawSub{t: t, nc: nc, r: bufio.NewReader(nc)}
	c.send(append(append([]byte(nil), zmtp.Greeting...), zmtp.AppendFrame(nil, zmtp.FlagCommand, zmtp.ReadyCommand("SUB"))...))
	var g [zmtp.GreetingSize]byte
	if _, err := io.ReadFull(c.r, g[:]); err != nil {
		t.Fatal(err)
	}
	flags, body := c.frame()
	if err := zmtp.CheckReady(flags, body, "PUB"); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *rawSub) send(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawSub) frame() (byte, []byte) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	flags, n, err := zmtp.ReadHeader(c.r)
	if err != nil {
		c.t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatal(err)
	}
	return flags, body
}

// ended waits for the relay to close the connection.
func (c *rawSub) ended() bool {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.r)
	return err == nil
}

func TestSubscribeCommandsOfZMTP31(t *testing.T) {
	s, ep, _ := listen(t, nil)
	c := dialRaw(t, ep, 0)
	c.send(zmtp.AppendFrame(nil, zmtp.FlagCommand, append([]byte("\x09SUBSCRIBE"), "org.x"...)))
	waitSubscriptions(t, s, 1)
	publish(s, "org.y.1", "org.x.1")
	if flags, topic := c.frame(); string(topic) != "org.x.1" || flags != zmtp.FlagMore {
		t.Fatalf("got frame %#x %q, want the topic org.x.1 with MORE", flags, topic)
	}
	if _, body := c.frame(); string(body) != `{"topic":"org.x.1"}` {
		t.Fatalf("got body %q", body)
	}
	c.send(zmtp.AppendFrame(nil, zmtp.FlagCommand, append([]byte("\x06CANCEL"), "org.x"...)))
	waitSubscriptions(t, s, 0)
	// PING is answered with PONG and its context.
	c.send(zmtp.AppendFrame(nil, zmtp.FlagCommand, []byte("\x04PING\x00\x0aabc")))
	if flags, body := c.frame(); flags != zmtp.FlagCommand || string(body) != "\x04PONGabc" {
		t.Fatalf("PING answered with %#x %q, want PONG abc", flags, body)
	}
}

func TestHostileSubscribersAreCutOff(t *testing.T) {
	s, ep, rec := listen(t, func(o *Options) { o.MaxConnections = 3; o.HeartbeatInterval = 100 * time.Millisecond })
	for _, tc := range []struct {
		name, reason string
		send         func(*rawSub)
	}{
		{"oversize subscription", ReasonOversize, func(c *rawSub) {
			c.send(zmtp.AppendFrame(nil, 0, append([]byte{1}, strings.Repeat("x", maxFrame)...)))
		}},
		{"too many subscriptions", ReasonTooManyPrefixes, func(c *rawSub) {
			var b []byte
			for i := range maxPrefixes + 1 {
				b = zmtp.AppendFrame(b, 0, fmt.Appendf(nil, "\x01org.%d", i))
			}
			c.send(b)
		}},
		{"silent (no PONG)", ReasonTimeout, func(*rawSub) {}},
	} {
		c := dialRaw(t, ep, 0)
		tc.send(c)
		if !c.ended() {
			t.Errorf("%s: the connection was not closed", tc.name)
		}
		testutil.WaitFor(t, 5*time.Second, tc.name+" counted as "+tc.reason, func() bool {
			_, ok := rec.Find(endpoint.Disconnected, tc.reason)
			return ok
		})
	}
	waitSubscriptions(t, s, 0)
	testutil.WaitFor(t, 5*time.Second, "subscriptions' budget given back", func() bool { return s.budget.Used() == 0 })

	// Over MaxConnections, new subscribers are refused and counted.
	for range 3 {
		dialRaw(t, ep, 0)
	}
	nc, err := net.Dial("tcp", strings.TrimPrefix(ep, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	testutil.WaitFor(t, 5*time.Second, "the fourth subscriber refused", func() bool {
		return rec.Count(endpoint.Disconnected, ReasonTooMany) == 1
	})
}

// A subscriber that never reads loses its own messages, counted in its own
// series, holds no more than its share, and is cut off as stalled; every
// other subscriber gets every message.
func TestStalledSubscriberIsBoundedAndCutOff(t *testing.T) {
	const n, batch, size = 3000, 100, 2 << 10
	const budget = 2 << 20
	s, ep, rec := listen(t, func(o *Options) {
		o.Budget = membudget.New(budget)
		o.HeartbeatInterval = 300 * time.Millisecond
	})
	p := startPeers(t)
	for i := range 3 {
		p.newSub(fmt.Sprint(i), ep, 0, "")
	}
	stalled := dialRaw(t, ep, 4<<10)
	stalled.send(zmtp.AppendFrame(nil, 0, []byte{1}))
	waitSubscriptions(t, s, 4)
	stalledPeer := stalled.nc.LocalAddr().String()

	peak := testutil.SamplePeak(time.Millisecond, s.budget.Used)
	var stalledQueue int64
	var stalledDrops uint64 // in its own series, while connected
	body := []byte(strings.Repeat("x", size))
	for i := 0; i < n; i += batch {
		var topics, bodies [][]byte
		for j := range batch {
			topics, bodies = append(topics, fmt.Appendf(nil, "org.test.%d", i+j)), append(bodies, body)
		}
		s.Publish(topics, bodies)
		testutil.WaitFor(t, 10*time.Second, "the reading subscribers to keep up", func() bool {
			for _, st := range s.Subscribers() {
				if st.Peer == stalledPeer {
					stalledQueue = max(stalledQueue, st.QueuedBytes)
					stalledDrops = max(stalledDrops, st.Dropped)
				} else if st.QueuedBytes > 0 {
					return false
				}
			}
			return true
		})
	}
	if max := peak(); max > budget {
		t.Errorf("the budget peaked at %d bytes, over its %d", max, budget)
	}
	share := max(int64(budget)/4, 64<<10)
	if stalledQueue == 0 || stalledQueue > share {
		t.Errorf("the stalled subscriber queued at most %d bytes, want some and no more than its share %d", stalledQueue, share)
	}
	for i := range 3 {
		if got, _ := p.recv(fmt.Sprint(i), n, 3*time.Second); len(got) != n {
			t.Errorf("reading subscriber %d got %d of %d", i, len(got), n)
		}
	}
	for _, st := range s.Subscribers() {
		if st.Peer != stalledPeer && st.Dropped != 0 {
			t.Errorf("reading subscriber %s lost %d", st.Peer, st.Dropped)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "the stalled subscriber cut off", func() bool {
		_, ok := rec.Find(endpoint.Disconnected, ReasonStalled)
		return ok
	})
	ev, _ := rec.Find(endpoint.Disconnected, ReasonStalled)
	// Cut off part way, it was offered fewer than n.
	if ev.Peer != stalledPeer || stalledDrops == 0 || ev.Dropped < stalledDrops || ev.Sent+ev.Dropped > n {
		t.Errorf("stalled event %+v: want peer %s, sent+dropped <= %d, dropped >= %d > 0", ev, stalledPeer, n, stalledDrops)
	}
	if d := s.Dropped(); d[dropShare]+d[dropHWM]+d[dropBudget]+d[dropDisconnected] != ev.Dropped {
		t.Errorf("drops by reason %v, want them all the stalled subscriber's %d", d, ev.Dropped)
	}
	waitSubscriptions(t, s, 3)
}

func TestCloseLingersToDeliverQueued(t *testing.T) {
	s, ep, _ := listen(t, nil)
	p := startPeers(t)
	p.newSub("l", ep, 0, "")
	waitSubscriptions(t, s, 1)
	var topics []string
	for i := range 500 {
		topics = append(topics, fmt.Sprintf("org.linger.%d", i))
	}
	publish(s, topics...)
	s.Close(2 * time.Second)
	if got, _ := p.recv("l", 500, 2*time.Second); len(got) != 500 {
		t.Fatalf("got %d of the 500 messages queued at Close", len(got))
	}
	if used := s.budget.Used(); used != 0 {
		t.Errorf("budget holds %d bytes after Close", used)
	}
}

// A message the budget has no room for waits, at most roomWait a batch,
// for the room the reclaimer takes back from strangers (inbound's stalled
// peers in the relay) instead of being dropped for every subscriber.
func TestPublishWaitsForReclaimedRoom(t *testing.T) {
	budget := membudget.New(1 << 20)
	s, ep, _ := listen(t, func(o *Options) { o.Budget = budget })
	p := startPeers(t)
	p.newSub("all", ep, 0, "")
	waitSubscriptions(t, s, 1)
	stranger := budget.Free()
	if !budget.Reserve(stranger) {
		t.Fatal("the stranger could not fill the budget")
	}

	// Nothing to reclaim: dropped at once, counted, as before.
	start := time.Now()
	publish(s, "org.a.1", "org.a.2")
	if d := s.Dropped()[dropBudget]; d != 2 || time.Since(start) > roomWait/2 {
		t.Fatalf("no reclaimer: %d dropped for budget in %v, want 2 at once", d, time.Since(start))
	}

	// A reclaimer whose bytes never come: the batch waits roomWait, no more.
	budget.SetReclaimer(func(int64) bool { return true })
	start = time.Now()
	publish(s, "org.a.3", "org.a.4", "org.a.5")
	if d, took := s.Dropped()[dropBudget], time.Since(start); d != 5 || took < roomWait || took > roomWait+time.Second {
		t.Fatalf("nothing reclaimed: %d dropped for budget after %v, want 5 after %v", d, took, roomWait)
	}

	// The stranger is disconnected: its bytes come back a little later.
	var calls atomic.Int32
	budget.SetReclaimer(func(int64) bool {
		if calls.Add(1) == 1 {
			time.AfterFunc(20*time.Millisecond, func() { budget.Release(stranger) })
		}
		return true
	})
	publish(s, "org.a.6", "org.a.7")
	if got, _ := p.recv("all", 2, 2*time.Second); strings.Join(got, " ") != "org.a.6 org.a.7" {
		t.Errorf("after reclaim the subscriber got %q, want org.a.6 org.a.7", got)
	}
	if d := s.Dropped()[dropBudget]; d != 5 || calls.Load() == 0 {
		t.Errorf("after reclaim: %d dropped for budget (want still 5), reclaimer called %d times", d, calls.Load())
	}
}
