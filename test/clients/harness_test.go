// Package clients holds end-to-end tests that run the built fedmsg-logger,
// fedmsg-tail and git hook against a relay, with real libzmq peers on both
// sides (Debian's python3-zmq) and the real bin/fedmsg-relay in between.
package clients

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client"
	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
)

// binDir holds the binaries TestMain builds.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fedmsg-clients-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Readable by all: a test runs fedmsg-logger as an unprivileged user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go not found on PATH:", err)
		return 1
	}
	build := exec.Command(goTool, "build", "-o", dir+"/",
		"github.com/fedora-infra/fedmsg-relay/cmd/fedmsg-logger",
		"github.com/fedora-infra/fedmsg-relay/cmd/fedmsg-tail",
		"github.com/fedora-infra/fedmsg-relay/cmd/fedmsg-relay")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

func bin(name string) string { return filepath.Join(binDir, name) }

// relay is a running bin/fedmsg-relay under test.
type relay struct {
	Inbound, Outbound, Confirm string
	proc                       *exec.Cmd
}

// startRelay starts fedmsg-relay on free loopback ports for the test's
// lifetime, with any extra YAML config lines.
func startRelay(t testing.TB, extraConfig ...string) *relay {
	t.Helper()
	r := &relay{Inbound: freeAddress(t), Outbound: freeAddress(t), Confirm: freeAddress(t)}
	r.start(t, extraConfig...)
	return r
}

// start runs the relay on r's addresses and returns once its inbound socket
// subscribes (a publisher dialled to it has seen its subscription).
func (r *relay) start(t testing.TB, extraConfig ...string) {
	t.Helper()
	conf := writeFile(t, t.TempDir(), "relay.yaml", fmt.Sprintf(
		"relay_inbound: %s\nrelay_outbound: %s\nrelay_inbound_confirm: %s\n%s\n",
		r.Inbound, r.Outbound, r.Confirm, strings.Join(extraConfig, "\n")))
	r.proc = exec.Command(bin("fedmsg-relay"), "--config", conf)
	startProcess(t, r.proc)
	conn, err := client.DialPublisher([]string{r.Inbound}, "", 10*time.Second, clienttest.Logger(t))
	if err != nil {
		t.Fatalf("fedmsg-relay did not start: %v", err)
	}
	conn.Close()
}

// stop ends the relay the way a restart does.
func (r *relay) stop(t testing.TB) {
	t.Helper()
	if err := r.proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _ = r.proc.Process.Wait()
}

// startProcess starts cmd, kills it at the end of the test, and returns its
// standard output.
func startProcess(t testing.TB, cmd *exec.Cmd) *bufio.Reader {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), stderr.String())
		}
	})
	return bufio.NewReader(stdout)
}

// pySubscriber connects a SUB socket to the relay's outbound address and
// prints every message as a JSON line {"topic": ..., "body": ...}, except
// the probes (topic "probe") used to learn that it is connected: it prints
// "READY" after the first probe.
const pySubscriber = `
import json, sys, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(sys.argv[1])
ready = False
while True:
    frames = sub.recv_multipart()
    topic = frames[0].decode("utf-8")
    if topic == "probe":
        if not ready:
            ready = True
            print("READY", flush=True)
        continue
    body = frames[1].decode("utf-8")
    json.loads(body)  # what every Python consumer does first
    print(json.dumps({"topic": topic, "body": body}), flush=True)
`

// received is one message a subscriber saw.
type received struct {
	Topic string `json:"topic"`
	Body  string `json:"body"`
}

// subscriber is a Python SUB on the relay's outbound side.
type subscriber struct {
	t    testing.TB
	msgs chan received
}

// subscribe starts a Python subscriber and returns once it is receiving.
func subscribe(t testing.TB, r *relay) *subscriber {
	t.Helper()
	out := startProcess(t, exec.Command(clienttest.RequirePython(t), "-c", pySubscriber, r.Outbound))
	ready := make(chan struct{})
	s := &subscriber{t: t, msgs: make(chan received, 100000)}
	go func() {
		line, err := out.ReadString('\n')
		if err != nil || line != "READY\n" {
			return
		}
		close(ready)
		for {
			line, err := out.ReadBytes('\n')
			if err != nil {
				return
			}
			var m received
			if json.Unmarshal(line, &m) == nil {
				s.msgs <- m
			}
		}
	}()
	probeUntil(t, r, ready)
	return s
}

// probeUntil publishes probe messages to the relay until done is closed:
// a SUB cannot tell when its subscription has reached the publisher, so the
// subscriber reports the first probe it sees.
func probeUntil(t testing.TB, r *relay, done <-chan struct{}) {
	t.Helper()
	conn, err := client.DialPublisher([]string{r.Inbound}, "probe", 5*time.Second, clienttest.Logger(t))
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	defer conn.Close()
	deadline := time.After(10 * time.Second)
	for {
		if err := conn.Send("probe", []byte(`{"topic": "probe", "msg": {}}`)); err != nil {
			t.Fatalf("probe: %v", err)
		}
		select {
		case <-done:
			return
		case <-deadline:
			t.Fatal("subscriber never saw a probe")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// next returns the next message, failing the test after timeout.
func (s *subscriber) next(timeout time.Duration) received {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(timeout):
		s.t.Fatalf("no message within %s", timeout)
	}
	return received{}
}

// expectNone fails if a message arrives within d.
func (s *subscriber) expectNone(d time.Duration) {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		s.t.Fatalf("unexpected message %+v", m)
	case <-time.After(d):
	}
}

// result is a finished command.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// runCmd runs name with args, stdin and extra environment, and waits.
func runCmd(t testing.TB, stdin string, env []string, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if exit, ok := err.(*exec.ExitError); ok {
		res.code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return res
}

// logger runs our fedmsg-logger with a config that cannot interfere
// (an empty FEDMSG_CONFIG directory) unless env overrides it.
func logger(t testing.TB, stdin string, env []string, args ...string) result {
	t.Helper()
	env = append([]string{"FEDMSG_CONFIG=" + emptyConfigDir(t)}, env...)
	return runCmd(t, stdin, env, bin("fedmsg-logger"), args...)
}

func emptyConfigDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fedmsg.d")
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	return dir
}

// writeFile writes content to dir/name.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeAddress is a loopback TCP address where nothing listens (yet).
func freeAddress(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "tcp://" + addr
}
