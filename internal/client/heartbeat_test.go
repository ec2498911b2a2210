package client

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
)

// pyHeartbeatRouter is a ROUTER with libzmq heartbeats as the relay sets
// them (a peer silent for 3 intervals is closed), answering "ok" to every
// message. It prints its address, then "message" per message received.
const pyHeartbeatRouter = `
import sys, zmq
ivl = int(sys.argv[1])
ctx = zmq.Context()
s = ctx.socket(zmq.ROUTER)
s.setsockopt(zmq.HEARTBEAT_IVL, ivl)
s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
port = s.bind_to_random_port("tcp://127.0.0.1")
print("tcp://127.0.0.1:%d" % port, flush=True)
while True:
    frames = s.recv_multipart()
    s.send_multipart([frames[0], b"ok"])
    print("message", flush=True)
`

// startHeartbeatRouter runs pyHeartbeatRouter and returns its address and process.
func startHeartbeatRouter(t *testing.T, ivl time.Duration) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(clienttest.RequirePython(t), "-c", pyHeartbeatRouter, strings.TrimSuffix(ivl.String(), "ms"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("router did not start: %v", err)
	}
	return strings.TrimSpace(addr), cmd
}

func TestConfirmerSurvivesIdleHeartbeats(t *testing.T) {
	const ivl = 100 * time.Millisecond
	addr, _ := startHeartbeatRouter(t, ivl)
	conn, err := DialConfirmer([]string{addr}, 5*time.Second, clienttest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Send("org.test", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	// Idle for many heartbeat timeouts: libzmq PINGs us and closes the
	// connection unless we answer. (Our own pings, every 10 s, do not
	// come into it.)
	first := conn.s
	time.Sleep(20 * ivl)
	if err := first.alive(); err != nil {
		t.Fatalf("connection ended while idle: %v", err)
	}
	if err := conn.Send("org.test", []byte(`{"n":2}`)); err != nil {
		t.Fatalf("after idling: %v", err)
	}
	if conn.s != first {
		t.Error("the connection was dialled again")
	}
}
