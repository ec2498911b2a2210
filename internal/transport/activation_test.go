package transport

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/client"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// holder keeps listening sockets open across relay generations, as
// systemd's socket unit does, and hands each generation a fresh dup.
type holder map[string]*net.TCPListener

func newHolder(t *testing.T, endpoints ...string) holder {
	h := holder{}
	for _, ep := range endpoints {
		ln, err := net.Listen("tcp4", ep[len("tcp://"):])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		h[ep] = ln.(*net.TCPListener)
	}
	return h
}

// fds dups each listener for one generation: libzmq closes the dup with
// its socket, the holder's own stays open.
func (h holder) fds(t *testing.T) map[string]int {
	m := map[string]int{}
	for ep, ln := range h {
		rc, err := ln.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var dup int
		if cerr := rc.Control(func(fd uintptr) { dup, err = syscall.Dup(int(fd)) }); cerr != nil || err != nil {
			t.Fatal(cerr, err)
		}
		m[ep] = dup
	}
	return m
}

func TestAdoptsInheritedListenersAcrossGenerations(t *testing.T) {
	for _, engine := range engines {
		t.Run("outbound_engine="+engine, func(t *testing.T) { adoptsAcrossGenerations(t, engine) })
	}
}

func adoptsAcrossGenerations(t *testing.T, engine string) {
	in := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	out := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	h := newHolder(t, in, out) // confirm is not inherited: bound as usual
	for gen := 1; gen <= 2; gen++ {
		o := Options{Inbound: []string{in}, Outbound: []string{out}, Confirm: []string{confirm},
			Inherited: h.fds(t), MaxMessageBytes: 1 << 20, InboundHWM: 1000, OutboundHWM: 1000,
			OutboundEngine: engine, BufferBytes: 16 << 20}
		s, err := Open(o)
		if err != nil {
			t.Fatalf("generation %d: %v", gen, err)
		}
		p := connect(t, s, o) // a message went from inbound to outbound
		p.pub.Close()
		p.sub.Close()
		s.Close()
		// The holder's socket still listens: a producer is queued by the
		// kernel for the next generation, never refused.
		for _, ep := range []string{in, out} {
			c, err := net.DialTimeout("tcp", ep[len("tcp://"):], 5*time.Second)
			if err != nil {
				t.Fatalf("generation %d closed: %s refuses connections: %v", gen, ep, err)
			}
			c.Close()
		}
		if !refused(portOf(t, confirm)) {
			t.Errorf("generation %d closed: the confirm port it bound itself still listens", gen)
		}
	}
}

func portOf(t *testing.T, ep string) int {
	_, p, err := net.SplitHostPort(ep[len("tcp://"):])
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

func TestSubscriptionsCountsPeers(t *testing.T) {
	for _, engine := range engines {
		t.Run("outbound_engine="+engine, func(t *testing.T) { subscriptionsCountsPeers(t, engine) })
	}
}

func subscriptionsCountsPeers(t *testing.T, engine string) {
	s, o := openEngine(t, fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)), engine)
	waitSubs := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		got := s.Subscriptions(0)
		for got != want && time.Now().Before(deadline) {
			got = s.Subscriptions(50 * time.Millisecond)
		}
		if got != want {
			t.Fatalf("Subscriptions = %d, want %d", got, want)
		}
	}
	var subs []*zmq.Socket
	for i, topics := range [][]string{{""}, {""}, {"org.fedoraproject.prod.git", "org.fedoraproject.prod.bodhi"}} {
		sub := newSocket(t, s, zmq.SUB)
		for _, topic := range topics {
			if err := sub.SetSubscribe(topic); err != nil {
				t.Fatal(err)
			}
		}
		if err := sub.Connect(o.Outbound[0]); err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
		subs = append(subs, sub)
	}
	waitSubs(4)
	subs[2].Close() // leaving takes both its topics away
	waitSubs(2)
	if err := subs[0].SetUnsubscribe(""); err != nil {
		t.Fatal(err)
	}
	waitSubs(1)
}

// HandOver half-closes the producers' connections: each producer closes its
// own after its last message. What it sent is received by this generation,
// what it had not sent yet by the next one: nothing is lost in between.
func TestHandOverLosesNothingInFlight(t *testing.T) {
	in := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	h := newHolder(t, in)
	open := func() *Sockets {
		s, err := Open(Options{Inbound: []string{in}, Outbound: []string{fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))},
			Inherited: h.fds(t), MaxMessageBytes: 1 << 20, InboundHWM: 100000, OutboundHWM: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A fedmsg producer: its own context, unlimited queue, quick reconnects,
	// sending every millisecond from its own goroutine until told to stop.
	pub, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{pub.SetLinger(0), pub.SetSndhwm(0), pub.SetReconnectIvl(100 * time.Millisecond), pub.Connect(in)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	stop, sent := make(chan struct{}), make(chan int)
	go func() {
		defer pub.Close()
		seq := 0
		for {
			select {
			case <-stop:
				sent <- seq
				return
			case <-time.After(time.Millisecond):
			}
			pub.SendMessage("org.fedoraproject.test.handover", fmt.Sprint(seq))
			seq++
		}
	}()
	var got []int
	recv := func(s *Sockets) int {
		n, err := s.Recv(10 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			var seq int
			fmt.Sscan(string(s.Message(i).Body), &seq)
			got = append(got, seq)
		}
		s.Flush()
		return n
	}
	s := open()
	for deadline := time.Now().Add(20 * time.Second); len(got) < 300; { // the producer's PUB drops until our subscription arrives
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("only %d messages from the producer", len(got))
		}
		recv(s)
	}
	s.HandOver()
	for deadline := time.Now().Add(20 * time.Second); s.PeersLeft() > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the producer never closed its half-closed connection")
		}
		recv(s)
	}
	if err := s.FinishHandOver(); err != nil {
		t.Fatal(err)
	}
	for recv(s) > 0 {
	}
	oldGen := len(got)
	s.Close()
	time.Sleep(300 * time.Millisecond) // the next relay starts a while later: the producer queues meanwhile

	s2 := open()
	defer s2.Close()
	for deadline := time.Now().Add(20 * time.Second); len(got) < oldGen+300 && time.Now().Before(deadline); {
		recv(s2)
	}
	close(stop)
	total := <-sent
	for deadline := time.Now().Add(20 * time.Second); got[len(got)-1] < total-1 && time.Now().Before(deadline); {
		recv(s2)
	}
	first := got[0]
	t.Logf("first generation received %d, the second %d, of %d sent", oldGen, len(got)-oldGen, total-first)
	for i, v := range got {
		if v != first+i {
			t.Fatalf("message %d is seq %d, want %d: lost or reordered across the hand-over", i, v, first+i)
		}
	}
	if len(got) != total-first || len(got) == oldGen {
		t.Fatalf("received %d of %d, %d of them by the first generation", len(got), total-first, oldGen)
	}
}

// With the Go engine, confirm endpoints are inherited too, and the hand
// over serves confirming clients to the end: a connected client is not
// half-closed but answered, counted by PeersLeft until it leaves, and a
// client that connects between generations is answered by the next one.
func TestGoEngineConfirmAcrossHandOver(t *testing.T) {
	in := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	h := newHolder(t, in, confirm)
	open := func() *Sockets {
		s, err := Open(Options{Inbound: []string{in}, Confirm: []string{confirm},
			Outbound: []string{fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))}, Inherited: h.fds(t),
			InboundEngine: EngineGo, BufferBytes: 4 << 20, MaxInboundConnections: 10,
			MaxMessageBytes: 1 << 20, InboundHWM: 1000, OutboundHWM: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// send confirms one message from another goroutine; the test's
	// goroutine is the forwarding loop (serve) meanwhile.
	send := func(c *client.Conn, body string) <-chan error {
		done := make(chan error, 1)
		go func() { done <- c.Send("org.fedoraproject.test.confirm", []byte(body)) }()
		return done
	}
	serve := func(s *Sockets, done <-chan error) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			n, err := s.Recv(10 * time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if m := s.Message(i); m.Source != FromRouter {
					t.Errorf("a confirm message came from source %d", m.Source)
				}
			}
			s.Flush()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("confirm: %v", err)
				}
				return
			default:
			}
		}
		t.Fatal("no confirmation")
	}
	dial := func() *client.Conn {
		c, err := client.DialConfirmer([]string{confirm}, 10*time.Second, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	s := open()
	c := dial()
	serve(s, send(c, "1"))
	s.HandOver()
	if n := s.PeersLeft(); n != 1 {
		t.Errorf("PeersLeft = %d with one confirming client connected, want 1", n)
	}
	serve(s, send(c, "2")) // still answered: not half-closed
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); s.PeersLeft() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the confirming client's connection is still counted after it left")
		}
	}
	if err := s.FinishHandOver(); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Between generations: queued by the kernel on the inherited socket.
	late := make(chan *client.Conn, 1)
	go func() {
		c, err := client.DialConfirmer([]string{confirm}, 10*time.Second, hclog.NewNullLogger())
		if err != nil {
			t.Error(err)
			close(late)
			return
		}
		late <- c
	}()
	time.Sleep(300 * time.Millisecond)
	s2 := open()
	defer s2.Close()
	c2, ok := <-late
	if !ok {
		t.FailNow()
	}
	defer c2.Close()
	serve(s2, send(c2, "3"))
}
