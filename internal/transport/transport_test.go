package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/client"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// open binds the relay's sockets on fresh loopback ports; inbound may use
// the production wildcard form.
func open(t *testing.T, inbound string) (*Sockets, Options) {
	t.Helper()
	return openEngine(t, inbound, EngineLibzmq)
}

// engines are the outbound engines tests that concern outbound run with.
var engines = []string{EngineLibzmq, EngineGo}

// openEngine is open with the given outbound engine.
func openEngine(t *testing.T, inbound, outboundEngine string) (*Sockets, Options) {
	t.Helper()
	o := Options{
		OutboundEngine:  outboundEngine,
		BufferBytes:     16 << 20,
		Inbound:         []string{inbound},
		Confirm:         []string{fmt.Sprintf("tcp://*:%d", testutil.FreePort(t))},
		Outbound:        []string{fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))},
		MaxMessageBytes: 1 << 20,
		InboundHWM:      1000,
		OutboundHWM:     1000,
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, o
}

// refused reports whether a TCP connection to port is refused now.
func refused(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func TestStopInboundUnbindsWildcard(t *testing.T) {
	port, confirmPort := testutil.FreePort(t), 0
	s, o := open(t, fmt.Sprintf("tcp://*:%d", port))
	fmt.Sscanf(o.Confirm[0], "tcp://*:%d", &confirmPort)
	for _, p := range []int{port, confirmPort} {
		if refused(p) {
			t.Fatalf("port %d refuses connections before the drain", p)
		}
	}
	producer, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := s.StopInbound(); err != nil {
		t.Fatalf("StopInbound: %v", err)
	}
	// A connection accepted before is closed too (after libzmq's greeting).
	producer.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Closed either way: a FIN (io.Copy returns nil) or, when our greeting
	// was still unread, a reset.
	if _, err := io.Copy(io.Discard, producer); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a producer connected before the drain: %v, want the connection closed", err)
	}
	// libzmq closes the listener in its I/O thread: poll for the refusal.
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range []int{port, confirmPort} {
		for !refused(p) {
			if time.Now().After(deadline) {
				t.Fatalf("port %d still accepts producers after StopInbound", p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A failure is reported, naming the endpoint, not swallowed.
	err = s.StopInbound()
	if want := fmt.Sprintf("unbind tcp://0.0.0.0:%d", port); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("second StopInbound = %v, want an error containing %q", err, want)
	}
}

// peers are a libzmq producer on the relay's inbound and a subscriber on
// its outbound socket.
type peers struct {
	pub, sub *zmq.Socket
}

// connect attaches both peers and returns once a message goes all the way
// through s: PUB/SUB has no other way to tell that a subscription arrived.
func connect(t *testing.T, s *Sockets, o Options) peers {
	t.Helper()
	p := peers{pub: newSocket(t, s, zmq.PUB), sub: newSocket(t, s, zmq.SUB)}
	if err := p.sub.SetSubscribe(""); err != nil {
		t.Fatal(err)
	}
	if err := p.sub.SetRcvtimeo(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := p.pub.Connect(strings.Replace(o.Inbound[0], "*", "127.0.0.1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.sub.Connect(o.Outbound[0]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := p.pub.SendMessage("probe", "{}"); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.Recv(20 * time.Millisecond); n > 0 {
			s.Flush()
		}
		if _, err := p.sub.RecvMessageBytes(0); err == nil {
			p.drain(t, s)
			return p
		}
	}
	t.Fatal("no probe went through the relay's sockets")
	return p
}

func newSocket(t *testing.T, s *Sockets, typ zmq.Type) *zmq.Socket {
	t.Helper()
	sock, err := s.ctx.NewSocket(typ)
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	return sock
}

// drain forwards and discards the probes still in flight.
func (p peers) drain(t *testing.T, s *Sockets) {
	t.Helper()
	for quiet := 0; quiet < 5; {
		n, err := s.Recv(20 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		s.Flush()
		_, rerr := p.sub.RecvMessageBytes(0)
		if n == 0 && rerr != nil {
			quiet++
		}
	}
}

// recvOne sends [topic, body] from the producer and returns once the relay
// holds it as message 0 of a one-message batch.
func (p peers) recvOne(t *testing.T, s *Sockets, topic, body string) Message {
	t.Helper()
	if _, err := p.pub.SendMessage(topic, body); err != nil {
		t.Fatal(err)
	}
	n, err := s.Recv(10 * time.Second)
	if err != nil || n != 1 {
		t.Fatalf("Recv = %d, %v; want the one message sent", n, err)
	}
	return s.Message(0)
}

// expect fails unless the subscriber's next message is exactly want.
func (p peers) expect(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got, err := p.sub.RecvMessage(0)
		if err != nil {
			continue
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("subscriber got %q, want %q", got, want)
		}
		return
	}
	t.Fatalf("subscriber got nothing within 10s, want %q", want)
}

// outOfMemory is a body no allocator can copy: larger than the 128 TiB of a
// process's address space, yet within what Go lets a slice claim. Only its
// length is used: the allocation fails before anything is read. It starts
// in a page outside Go's heap, which the race detector's pointer checks
// leave alone.
func outOfMemory(t *testing.T) []byte {
	t.Helper()
	page, err := syscall.Mmap(-1, 0, os.Getpagesize(), syscall.PROT_READ, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(page) })
	return unsafe.Slice(&page[0], 3<<46)
}

func TestReplaceBodyOutOfMemory(t *testing.T) {
	s, o := open(t, fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)))
	p := connect(t, s, o)

	// Dropped, as the relay does for a body it could not sign: nothing is
	// freed twice (this crashed in zmq_msg_close) and nothing is sent.
	p.recvOne(t, s, "org.test.a", `{"a":1}`)
	if err := s.ReplaceBody(0, outOfMemory(t)); err == nil {
		t.Fatal("ReplaceBody of 192 TiB succeeded")
	}
	s.SetVerdict(0, Drop+1)
	if sent, failed := s.Flush(); sent != 0 || failed != 0 {
		t.Errorf("Flush after a failed replace and a drop = %d sent, %d failed", sent, failed)
	}

	// Sent anyway: the received body is still whole.
	p.recvOne(t, s, "org.test.b", `{"b":2}`)
	if err := s.ReplaceBody(0, outOfMemory(t)); err == nil {
		t.Fatal("ReplaceBody of 192 TiB succeeded")
	}
	if m := s.Message(0); string(m.Body) != `{"b":2}` {
		t.Errorf("body after a failed replace = %q", m.Body)
	}
	if sent, failed := s.Flush(); sent != 1 || failed != 0 {
		t.Errorf("Flush = %d sent, %d failed, want 1, 0", sent, failed)
	}
	p.expect(t, "org.test.b", `{"b":2}`)

	// And a replacement that fits still works.
	p.recvOne(t, s, "org.test.c", `{"c":3}`)
	if err := s.ReplaceBody(0, []byte(`{"c":"signed"}`)); err != nil {
		t.Fatal(err)
	}
	s.Flush()
	p.expect(t, "org.test.c", `{"c":"signed"}`)
}

// faultPreload interposes zmq_msg_send: a non-blocking body frame that
// follows the topic $FWD_FAULT_TOPIC fails with ETERM, as when the context
// shuts down between the two frames. Only the relay's forwarding loop sends
// with ZMQ_DONTWAIT, so the test's own producer is not affected.
const faultPreload = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static int armed;

int zmq_msg_send(zmq_msg_t *m, void *s, int flags) {
    static int (*real)(zmq_msg_t *, void *, int);
    if (real == NULL) real = (int (*)(zmq_msg_t *, void *, int))dlsym(RTLD_NEXT, "zmq_msg_send");
    if (!(flags & ZMQ_DONTWAIT)) return real(m, s, flags);
    if (armed) {
        armed = 0;
        errno = ETERM;
        return -1;
    }
    const char *topic = getenv("FWD_FAULT_TOPIC");
    armed = topic != NULL && (flags & ZMQ_SNDMORE) && zmq_msg_size(m) == strlen(topic) &&
            memcmp(zmq_msg_data(m), topic, strlen(topic)) == 0;
    return real(m, s, flags);
}
`

// TestFailedBodySendEndsTheMessage runs itself again with faultPreload: the
// failure is reachable only when libzmq shuts down mid-message, and
// interposing keeps the fault out of the relay's code.
func TestFailedBodySendEndsTheMessage(t *testing.T) {
	const topic = "org.test.torn"
	if os.Getenv("FWD_FAULT_TOPIC") == topic {
		failedBodySend(t, topic)
		return
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc" // what cgo built this package with
	}
	dir := t.TempDir()
	src, so := filepath.Join(dir, "fault.c"), filepath.Join(dir, "fault.so")
	if err := os.WriteFile(src, []byte(faultPreload), 0o644); err != nil {
		t.Fatal(err)
	}
	cflags, err := exec.Command("pkg-config", "--cflags", "libzmq").Output()
	if err != nil {
		t.Fatalf("pkg-config libzmq: %v", err)
	}
	args := append(strings.Fields(string(cflags)), "-shared", "-fPIC", "-o", so, src, "-ldl")
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("build the fault preload: %v\n%s", err, out)
	}
	child := exec.Command(os.Args[0], "-test.run", "^TestFailedBodySendEndsTheMessage$", "-test.v", "-test.count=1")
	child.Env = append(os.Environ(), "LD_PRELOAD="+so, "FWD_FAULT_TOPIC="+topic)
	out, err := child.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestFailedBodySendEndsTheMessage") {
		t.Fatalf("with the fault injected: %v\n%s", err, out)
	}
}

func failedBodySend(t *testing.T, topic string) {
	s, o := open(t, fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)))
	p := connect(t, s, o)

	p.recvOne(t, s, topic, `{"t":1}`)
	if sent, failed := s.Flush(); sent != 0 || failed != 1 {
		t.Errorf("Flush with a failing body = %d sent, %d failed, want 0, 1", sent, failed)
	}
	// The torn message is closed by an empty frame; the next one arrives
	// as its own two frames, not glued to the torn one's topic.
	p.recvOne(t, s, "org.test.next", `{"n":2}`)
	if sent, failed := s.Flush(); sent != 1 || failed != 0 {
		t.Errorf("Flush = %d sent, %d failed, want 1, 0", sent, failed)
	}
	p.expect(t, topic, "")
	p.expect(t, "org.test.next", `{"n":2}`)

	// With the Go engine, Go answers its confirming client "refused:send".
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	g, err := Open(Options{Inbound: []string{fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))}, Confirm: []string{confirm},
		Outbound: []string{fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))}, InboundEngine: EngineGo, BufferBytes: 4 << 20, MaxInboundConnections: 10,
		MaxMessageBytes: 1 << 20, InboundHWM: 1000, OutboundHWM: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c, err := client.DialConfirmer([]string{confirm}, 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- c.Send(topic, []byte(`{"t":2}`)) }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err := g.Recv(10 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		g.Flush()
		select {
		case err := <-done:
			var refused *client.RefusedError
			if !errors.As(err, &refused) || refused.Reason != "send" {
				t.Errorf("Go engine's confirming client got %v, want refused:send", err)
			}
			return
		default:
		}
	}
	t.Fatal("no reply to the Go engine's confirming client")
}
