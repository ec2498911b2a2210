package client

import (
	"bufio"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
)

// pyPeer binds one pyzmq socket and prints its address, then acts by role:
//
//	sub PREFIX     SUB subscribed to PREFIX; prints each message it receives
//	router REPLY   ROUTER answering every message with REPLY ("-" = never)
//	pub            PUB (the wrong peer for a publisher)
//	garbage        a plain TCP server that writes non-ZMTP bytes
//
// With DELAY > 0 it prints a free port at once and binds it DELAY seconds later.
const pyPeer = `
import socket, sys, time, zmq
role, arg, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
if delay > 0:
    print("tcp://127.0.0.1:%d" % port, flush=True)
    time.sleep(delay)
if role == "garbage":
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    print("tcp://127.0.0.1:%d" % port, flush=True)
    while True:
        c, _ = srv.accept()
        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" + b"x" * 64)
ctx = zmq.Context()
kind = {"sub": zmq.SUB, "router": zmq.ROUTER, "pub": zmq.PUB}[role]
s = ctx.socket(kind)
if role == "sub":
    s.setsockopt(zmq.SUBSCRIBE, arg.encode())
s.bind("tcp://127.0.0.1:%d" % port)
if delay == 0:
    print("tcp://127.0.0.1:%d" % port, flush=True)
while True:
    frames = s.recv_multipart()
    if role == "sub":
        print(" ".join(f.decode() for f in frames), flush=True)
    elif role == "router" and arg != "-":
        s.send_multipart([frames[0], arg.encode()])
`

// startPeer runs pyPeer and returns its address and output.
func startPeer(t *testing.T, role, arg string, delay time.Duration) (string, *bufio.Reader) {
	t.Helper()
	addr, out, _ := runPeer(t, pyPeer, role, arg, strconv.FormatFloat(delay.Seconds(), 'f', -1, 64))
	return addr, out
}

// runPeer runs a Python peer script that prints its address first, and
// returns that address, the rest of its output and the process.
func runPeer(t *testing.T, script string, args ...string) (string, *bufio.Reader, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(clienttest.RequirePython(t), append([]string{"-c", script}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := bufio.NewReader(stdout)
	addr, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("peer did not start: %v", err)
	}
	return strings.TrimSpace(addr), out, cmd
}

func TestPublisherDelivers(t *testing.T) {
	cases := []struct {
		name  string
		delay time.Duration
		body  string
	}{
		{"peer up", 0, "short"},
		// A refused connection is retried, like libzmq's reconnect.
		{"peer starts late", 500 * time.Millisecond, "late"},
		{"long frame", 0, strings.Repeat("x", 70000)[:300] + "end"},
	}
	for _, tc := range cases {
		addr, out := startPeer(t, "sub", "org.", tc.delay)
		conn, err := DialPublisher([]string{addr}, "org.test", 5*time.Second, clienttest.Logger(t))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := conn.Send("org.test", []byte(tc.body)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// Close returns once the peer has read everything: no sleep needed.
		if err := conn.Close(); err != nil {
			t.Fatalf("%s: close: %v", tc.name, err)
		}
		line, err := out.ReadString('\n')
		if err != nil || line != "org.test "+tc.body+"\n" {
			t.Errorf("%s: peer got %q, %v", tc.name, line, err)
		}
	}
}

func TestDialFailures(t *testing.T) {
	pubAddr, _ := startPeer(t, "pub", "", 0)
	garbageAddr, _ := startPeer(t, "garbage", "", 0)
	otherSubAddr, _ := startPeer(t, "sub", "other.", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := "tcp://" + l.Addr().String()
	l.Close()
	cases := []struct {
		name    string
		addrs   []string
		confirm bool
		want    []string // all of these
	}{
		{"nothing listens", []string{closedAddr}, false, []string{closedAddr, "connection refused"}},
		// libzmq drops an incompatible peer, sometimes before its READY.
		{"wrong socket type", []string{pubAddr}, false, []string{pubAddr}},
		{"not zmtp", []string{garbageAddr}, false, []string{"does not speak ZMTP 3"}},
		{"subscription does not cover the topic", []string{otherSubAddr}, false, []string{otherSubAddr, `the relay subscribes to ["other."], none a prefix of "org.test"`}},
		{"confirmer to a SUB", []string{otherSubAddr}, true, []string{otherSubAddr}},
		{"bad endpoint", []string{"udp://127.0.0.1:1"}, false, []string{"unsupported endpoint"}},
		{"no address", nil, false, []string{"no relay address configured"}},
	}
	// Long enough for a loaded machine to run the Python peers' side.
	const timeout = 1500 * time.Millisecond
	for _, tc := range cases {
		start := time.Now()
		var err error
		if tc.confirm {
			_, err = DialConfirmer(tc.addrs, timeout, clienttest.Logger(t))
		} else {
			_, err = DialPublisher(tc.addrs, "org.test", timeout, clienttest.Logger(t))
		}
		if !errors.Is(err, ErrNoRelay) {
			t.Errorf("%s: err = %v, want ErrNoRelay", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
		if d := time.Since(start); d > timeout+3*time.Second {
			t.Errorf("%s: took %s with a %s timeout", tc.name, d, timeout)
		}
	}
}

func TestConfirmer(t *testing.T) {
	cases := []struct {
		reply   string
		wantErr string
	}{
		{"ok", ""},
		{"refused:oversize", "relay refused the message: oversize"},
		{"what", "unexpected reply"},
		{"-", "no confirmation"},
	}
	for _, tc := range cases {
		addr, _ := startPeer(t, "router", tc.reply, 0)
		conn, err := DialConfirmer([]string{addr}, 500*time.Millisecond, clienttest.Logger(t))
		if err != nil {
			t.Fatalf("reply %q: %v", tc.reply, err)
		}
		err = conn.Send("org.test", []byte(`{"topic": "org.test"}`))
		conn.Close()
		var refused *RefusedError
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("reply %q: %v", tc.reply, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("reply %q: err = %v, want %q", tc.reply, err, tc.wantErr)
		case strings.HasPrefix(tc.reply, "refused:") && !errors.As(err, &refused):
			t.Errorf("reply %q: %T is not a *RefusedError", tc.reply, err)
		}
	}
}
