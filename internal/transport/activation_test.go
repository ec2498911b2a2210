package transport

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

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
	in := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	out := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	h := newHolder(t, in, out) // confirm is not inherited: bound as usual
	for gen := 1; gen <= 2; gen++ {
		o := Options{Inbound: []string{in}, Outbound: []string{out}, Confirm: []string{confirm},
			Inherited: h.fds(t), MaxMessageBytes: 1 << 20, InboundHWM: 1000, OutboundHWM: 1000}
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
	s, o := open(t, fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)))
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
