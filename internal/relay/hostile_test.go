package relay

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// tcpAddr turns tcp://127.0.0.1:N into 127.0.0.1:N.
func tcpAddr(ep string) string { return strings.TrimPrefix(ep, "tcp://") }

// assertRelays checks that a message still goes end to end through libzmq
// peers, joining late subscribers by retrying.
func assertRelays(t *testing.T, tr *testRelay) {
	t.Helper()
	sub := newSocket(t, zmq.SUB)
	defer sub.Close()
	must(t, sub.SetSubscribe(""))
	must(t, sub.SetRcvtimeo(50*time.Millisecond))
	must(t, sub.Connect(tr.outbound))
	pub := newSocket(t, zmq.PUB)
	defer pub.Close()
	must(t, pub.Connect(tr.inbound))
	body := fedmsgBody(testTopic, 7, "")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := pub.SendMessage(testTopic, body); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.RecvMessageBytes(0); err == nil && string(m[1]) == string(body) {
			return
		}
	}
	t.Fatal("relay no longer relays")
}

// Raw TCP peers sending garbage, a ZMTP greeting with a giant frame length,
// or nothing at all never take the relay down or block others, and their
// file descriptors are released.
func TestHostileTCPPeers(t *testing.T) {
	tr := startRelay(t, func(c *Options) {
		c.HandshakeTimeout = 500 * time.Millisecond
		c.MaxMessageBytes = 1 << 20
	})
	assertRelays(t, tr)
	fdsBefore, goroutinesBefore := openFDs(t), runtime.NumGoroutine()

	// A valid ZMTP 3.0 NULL greeting, a READY command, then one message frame
	// whose 8-byte length says 2^62 bytes: libzmq must refuse, not allocate.
	greeting := make([]byte, 64)
	greeting[0], greeting[9], greeting[10], greeting[11] = 0xff, 0x7f, 3, 0
	copy(greeting[12:], "NULL")
	ready := []byte{0x04, 0}
	readyBody := append([]byte{5}, "READY"...)
	readyBody = append(readyBody, 11)
	readyBody = append(readyBody, "Socket-Type"...)
	readyBody = binary.BigEndian.AppendUint32(readyBody, 3)
	readyBody = append(readyBody, "PUB"...)
	ready[1] = byte(len(readyBody))
	ready = append(ready, readyBody...)
	giant := append([]byte{0x02}, binary.BigEndian.AppendUint64(nil, 1<<62)...)

	payloads := map[string][]byte{
		"garbage":       []byte("GET / HTTP/1.1\r\nHost: relay\r\n\r\n" + strings.Repeat("\x00\xff", 512)),
		"giant length":  append(append(append([]byte{}, greeting...), ready...), giant...),
		"nothing":       nil,
		"half greeting": greeting[:10],
	}
	var conns []net.Conn
	for name, p := range payloads {
		for i := 0; i < 20; i++ {
			c, err := net.Dial("tcp", tcpAddr(tr.inbound))
			if err != nil {
				t.Fatalf("%s: dial: %v", name, err)
			}
			conns = append(conns, c)
			if p != nil {
				_, _ = c.Write(p) // the relay may close first
			}
		}
	}
	// Silent and half-handshaken peers must not block others meanwhile.
	assertRelays(t, tr)
	// The handshake timeout closes the silent ones; the rest were refused.
	time.Sleep(time.Second)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("relay kept a hostile connection open: %v", c.LocalAddr())
				}
				break
			}
		}
		c.Close()
	}
	failures := tr.metric(t, `fedmsg_relay_handshake_failures_total{side="inbound"}`)
	if n, _ := strconv.Atoi(failures); n < 40 {
		t.Errorf("handshake failures = %s, want at least the 40 garbage and silent peers", failures)
	}
	assertRelays(t, tr)
	waitStable(t, "open file descriptors", fdsBefore, func() int { return openFDs(t) })
	waitStable(t, "goroutines", goroutinesBefore, runtime.NumGoroutine)
}

// Thousands of producers that connect, send one message and go away leave
// no file descriptors or goroutines behind.
func TestConnectSendCloseChurn(t *testing.T) {
	tr := startRelay(t, nil)
	assertRelays(t, tr)
	fdsBefore, goroutinesBefore := openFDs(t), runtime.NumGoroutine()
	// pyzmq in its own process: each cycle is a new PUB socket that connects,
	// sends one message and closes, as a cron script would.
	const cycles = 2000
	out, err := exec.Command(testutil.Python(t), testutil.PeerScript(), "churn", tr.inbound, strconv.Itoa(cycles)).CombinedOutput()
	if err != nil {
		t.Fatalf("churn: %v\n%s", err, out)
	}
	assertRelays(t, tr)
	waitStable(t, "open file descriptors", fdsBefore, func() int { return openFDs(t) })
	waitStable(t, "goroutines", goroutinesBefore, runtime.NumGoroutine)
	tr.waitMetric(t, `fedmsg_relay_connections{side="inbound"}`, "0")
	accepted, _ := strconv.Atoi(tr.metric(t, `fedmsg_relay_connections_accepted_total{side="inbound"}`))
	// A socket closed with linger 0 may give up before its TCP connect
	// completes, so not every cycle reaches the relay; most must.
	if accepted < cycles/2 {
		t.Errorf("accepted %d inbound connections, want at least %d", accepted, cycles/2)
	}
}

// waitStable waits for a resource count to come back to (at most a little
// above) where it was: libzmq closes connections asynchronously.
func waitStable(t *testing.T, what string, before int, now func() int) {
	t.Helper()
	const slack = 3
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := now()
		if n <= before+slack {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s grew from %d to %d", what, before, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A subscriber that stops reading costs only itself: the others get every
// message and the relay's memory stays bounded by its high-water mark.
func TestStalledSubscriberDoesNotStallOthers(t *testing.T) {
	tr := startRelay(t, func(c *Options) {
		c.OutboundHWM = 1000
		c.InboundHWM = 100000
	})
	// The stalled subscriber: a real libzmq SUB with tiny buffers that never reads.
	stalled := newSocket(t, zmq.SUB)
	must(t, stalled.SetRcvhwm(10))
	must(t, stalled.SetRcvbuf(4096))
	must(t, stalled.SetSubscribe(""))
	must(t, stalled.Connect(tr.outbound))
	assertRelays(t, tr) // also joins one fast subscriber... which we do not keep

	fast, pub := fastSubscriber(t, tr)
	rssBefore := rssKiB(t)
	// Bursts below the HWM, each read by the fast subscriber before the next:
	// any loss would be the stalled subscriber's fault.
	const n, burst = 30000, 500
	pad := `, "pad": "` + strings.Repeat("z", 900) + `"`
	got := 0
	for sent := 0; sent < n; {
		for i := 0; i < burst; i++ {
			if _, err := pub.SendMessage(testTopic, fedmsgBody(testTopic, sent, pad)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		for got < sent {
			if _, err := fast.RecvMessageBytes(0); err != nil {
				t.Fatalf("fast subscriber got %d of %d messages while another stalled: %v", got, sent, err)
			}
			got++
		}
	}
	// 30,000 x 1 KiB went out; the stalled subscriber's queue is capped at
	// the HWM (1000 messages), so the relay must not have grown by the flood.
	if grown := rssKiB(t) - rssBefore; grown > 20*1024 {
		t.Errorf("RSS grew by %d KiB while a subscriber stalled", grown)
	}
	tr.waitMetric(t, `fedmsg_relay_connections{side="outbound"}`, "2")
}

// fastSubscriber connects a libzmq SUB that takes everything and a PUB
// producer to tr and returns them once messages flow from one to the other,
// the joins sent meanwhile drained; the SUB then waits 3 s for a message.
func fastSubscriber(t *testing.T, tr *testRelay) (*zmq.Socket, *zmq.Socket) {
	fast := newSocket(t, zmq.SUB)
	must(t, fast.SetRcvhwm(0))
	must(t, fast.SetSubscribe(""))
	must(t, fast.SetRcvtimeo(50*time.Millisecond))
	must(t, fast.Connect(tr.outbound))
	pub := newSocket(t, zmq.PUB)
	must(t, pub.SetSndhwm(0))
	must(t, pub.Connect(tr.inbound))
	join := fedmsgBody(testTopic, -1, "")
	for {
		_, _ = pub.SendMessage(testTopic, join)
		if _, err := fast.RecvMessageBytes(0); err == nil {
			break
		}
	}
	for { // drain joins
		if _, err := fast.RecvMessageBytes(0); err != nil {
			break
		}
	}
	must(t, fast.SetRcvtimeo(3*time.Second))
	return fast, pub
}

func rssKiB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
