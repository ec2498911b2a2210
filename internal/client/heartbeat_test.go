package client

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// pyHeartbeatRouter is a ROUTER with libzmq heartbeats as the relay sets
// them (a peer silent for 3 intervals is closed), answering "ok" to every
// message. It prints its address. An interval of 0 turns heartbeats off;
// a TTL (ms) in its PINGs tells peers how long its silence may last.
const pyHeartbeatRouter = `
import sys, zmq
ivl, ttl = int(sys.argv[1]), int(sys.argv[2])
ctx = zmq.Context()
s = ctx.socket(zmq.ROUTER)
if ivl > 0:
    s.setsockopt(zmq.HEARTBEAT_IVL, ivl)
    s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
    s.setsockopt(zmq.HEARTBEAT_TTL, ttl)
port = s.bind_to_random_port("tcp://127.0.0.1")
print("tcp://127.0.0.1:%d" % port, flush=True)
while True:
    frames = s.recv_multipart()
    s.send_multipart([frames[0], b"ok"])
`

// startHeartbeatRouter runs pyHeartbeatRouter and returns its address and process.
func startHeartbeatRouter(t *testing.T, ivl, ttl time.Duration) (string, *exec.Cmd) {
	t.Helper()
	addr, _, cmd := runPeer(t, pyHeartbeatRouter,
		strconv.FormatInt(ivl.Milliseconds(), 10), strconv.FormatInt(ttl.Milliseconds(), 10))
	return addr, cmd
}

func TestConfirmerSurvivesIdleHeartbeats(t *testing.T) {
	// Timeouts of 3 intervals, long enough for a loaded machine to answer.
	const ivl = 250 * time.Millisecond
	cases := []struct {
		name     string
		relayIvl time.Duration // 0: the relay never pings
		hb       heartbeat
	}{
		// libzmq PINGs us and closes the connection unless we answer.
		{"the relay pings", ivl, defaultHeartbeat},
		// We ping, libzmq answers, and the silence is not taken for death.
		{"the client pings", 0, heartbeat{interval: ivl, timeout: 3 * ivl}},
	}
	for _, tc := range cases {
		addr, _ := startHeartbeatRouter(t, tc.relayIvl, 0)
		conn, err := dialConfirmer([]string{addr}, 5*time.Second, tc.hb, clienttest.Logger(t))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := conn.Send("org.test", []byte(`{"n":1}`)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		first := conn.s
		time.Sleep(8 * ivl) // idle for more than two heartbeat timeouts
		if err := first.alive(); err != nil {
			t.Errorf("%s: connection ended while idle: %v", tc.name, err)
		}
		if err := conn.Send("org.test", []byte(`{"n":2}`)); err != nil {
			t.Errorf("%s: after idling: %v", tc.name, err)
		}
		if conn.s != first {
			t.Errorf("%s: the connection was dialled again", tc.name)
		}
		conn.Close()
	}
}

func TestConfirmerLeavesADeadRelay(t *testing.T) {
	const ivl = 100 * time.Millisecond
	cases := []struct {
		name     string
		relayIvl time.Duration
		relayTTL time.Duration
		hb       heartbeat
	}{
		{"unanswered pings", time.Second, 0, heartbeat{interval: ivl, timeout: 3 * ivl}},
		// Our own timeout is 30 s: the relay's TTL is what tells.
		{"the relay's TTL", ivl, 5 * ivl, defaultHeartbeat},
	}
	for _, tc := range cases {
		frozenAddr, frozen := startHeartbeatRouter(t, tc.relayIvl, tc.relayTTL)
		// The second relay binds a moment later, so the first wins the dial.
		lateAddr, _ := startPeer(t, "router", "ok", time.Second)
		conn, err := dialConfirmer([]string{frozenAddr, lateAddr}, 5*time.Second, tc.hb, clienttest.Logger(t))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if conn.Addr != frozenAddr {
			t.Fatalf("%s: dialled %s, want %s", tc.name, conn.Addr, frozenAddr)
		}
		if err := conn.Send("org.test", []byte(`{"n":1}`)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for tc.relayTTL > 0 && conn.s.ttl.Load() == 0 { // its first PING
			if time.Now().After(deadline) {
				t.Fatalf("%s: no PING with a TTL from the relay", tc.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// A relay host that vanishes sends no RST: the connection looks open.
		if err := frozen.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for conn.s.alive() == nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the client never noticed the relay stopped answering", tc.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := conn.Send("org.test", []byte(`{"n":2}`)); err != nil {
			t.Fatalf("%s: after the relay froze: %v", tc.name, err)
		}
		if conn.Addr != lateAddr {
			t.Errorf("%s: sent to %s, want the live relay %s", tc.name, conn.Addr, lateAddr)
		}
		conn.Close()
	}
}

// hostilePeer accepts connections, completes a ZMTP handshake as socketType
// and then runs flood on each until the client hangs up.
func hostilePeer(t *testing.T, socketType string, flood func(z *zmtpConn) error) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				go func() { _, _ = io.Copy(io.Discard, c) }()
				z := &zmtpConn{Conn: c, w: bufio.NewWriterSize(c, 1<<20)}
				z.w.Write(zmtp.Greeting)
				z.writeFrame(zmtp.FlagCommand, zmtp.ReadyCommand(socketType))
				for z.w.Flush() == nil && flood(z) == nil {
				}
			}()
		}
	}()
	return "tcp://" + l.Addr().String()
}

func TestHostilePeerBounded(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 60000)
	var n atomic.Int64
	cases := []struct {
		name, socketType string
		flood            func(z *zmtpConn) error
		confirm          bool
		want             string
	}{
		{"endless subscriptions", "SUB", func(z *zmtpConn) error {
			z.writeFrame(0, append([]byte(fmt.Sprintf("\x01other.%d.", n.Add(1))), big...))
			return nil
		}, false, `the relay subscribes to ["other.`},
		{"huge frame header", "SUB", func(z *zmtpConn) error {
			z.w.Write([]byte{zmtp.FlagLong, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			z.w.Flush()
			time.Sleep(time.Second)
			return io.EOF
		}, false, "frame of 9223372036854775807 bytes from peer"},
		{"endless reply", "ROUTER", func(z *zmtpConn) error {
			z.writeFrame(zmtp.FlagMore, big)
			return nil
		}, true, "message of more than 65536 bytes from peer"},
	}
	const timeout = 2 * time.Second
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, tc := range cases {
		addr := hostilePeer(t, tc.socketType, tc.flood)
		start := time.Now()
		var err error
		if tc.confirm {
			var conn *Conn
			if conn, err = DialConfirmer([]string{addr}, timeout, clienttest.Logger(t)); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			err = conn.Send("org.test", []byte(`{}`))
			conn.Close()
		} else {
			_, err = DialPublisher([]string{addr}, "org.test", timeout, clienttest.Logger(t))
		}
		elapsed := time.Since(start)
		switch {
		case err == nil || !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: err = %.500v, want %q", tc.name, err, tc.want)
		case len(err.Error()) > 4096:
			t.Errorf("%s: a %d-byte error", tc.name, len(err.Error()))
		}
		if elapsed > timeout+2*time.Second {
			t.Errorf("%s: took %s with a %s timeout", tc.name, elapsed, timeout)
		}
	}
	// What the peers sent was read and let go: the process did not grow
	// by what they sent (hundreds of MiB in these seconds).
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.Sys) - int64(before.Sys); grown > 64<<20 {
		t.Errorf("memory obtained from the OS grew by %d MiB", grown>>20)
	}
}
