package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

func relayBinary(t *testing.T) string { return testutil.Binary(t, "fedmsg-relay") }

func TestCheckConfig(t *testing.T) {
	bin := relayBinary(t)
	good := testutil.WriteFile(t, "good.yaml", "relay_inbound: tcp://127.0.0.1:2003\nrelay_outbound: tcp://127.0.0.1:4001\n")
	bad := testutil.WriteFile(t, "bad.yaml", "relay_inbound: tcp://127.0.0.1:2003\nbogus: 1\nlog_level: loud\n")
	old := testutil.WriteFile(t, "old.yaml", "relay_inbound: tcp://127.0.0.1:2003\ninbound_buffer_bytes: 33554432\n")
	both := testutil.WriteFile(t, "both.yaml", "buffer_bytes: 33554432\ninbound_buffer_bytes: 33554432\n")
	tests := []struct {
		args     []string
		exit     int
		contains []string
	}{
		{[]string{"--check-config", "--config", good}, 0, []string{"configuration ok"}},
		{[]string{"--check-config", "--config="}, 0, []string{"built-in defaults: configuration ok"}},
		{[]string{"--check-config", "--config", bad}, 1, []string{bad + ":2: bogus: unknown key"}},
		{[]string{"--check-config", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, 1, []string{"no such file"}},
		{[]string{"--check-config", "--config", old}, 0, []string{"warning: " + old + ":2: inbound_buffer_bytes: deprecated: use buffer_bytes", "configuration ok"}},
		{[]string{"--check-config", "--config", both}, 1, []string{both + ":2: inbound_buffer_bytes:", "line 1 sets"}},
		{[]string{"--version"}, 0, []string{"fedmsg-relay "}},
		{[]string{"--no-such-flag"}, 2, []string{"flag provided but not defined"}},
	}
	for _, tt := range tests {
		out, err := exec.Command(bin, tt.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.exit {
			t.Errorf("fedmsg-relay %q: exit %d, want %d\n%s", tt.args, code, tt.exit, out)
		}
		for _, want := range tt.contains {
			if !strings.Contains(string(out), want) {
				t.Errorf("fedmsg-relay %q: output lacks %q:\n%s", tt.args, want, out)
			}
		}
	}
	// Every problem of the file is reported, not only the first.
	out, _ := exec.Command(bin, "--check-config", "--config", bad).CombinedOutput()
	if !strings.Contains(string(out), ":3: log_level:") {
		t.Errorf("second problem not reported:\n%s", out)
	}
}

// The binary under a fake systemd: READY=1 only once bound, a message goes
// through, SIGHUP reopens a rotated log, SIGTERM says STOPPING=1, drains and
// exits 0.
func TestDaemonLifecycle(t *testing.T) {
	bin := relayBinary(t)
	dir := t.TempDir()
	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	inbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	outbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	logPath := filepath.Join(dir, "fedmsg-relay.log")
	cfg := testutil.WriteFile(t, "relay.yaml", fmt.Sprintf(
		"relay_inbound: %s\nrelay_outbound: [%s]\nlog_file: %s\nlog_level: debug\nmetrics_address: %s\ninbound_buffer_bytes: 33554432\n",
		inbound, outbound, logPath, metricsAddr))

	cmd := exec.Command(bin, "--config", cfg)
	// WATCHDOG_PID empty means "this process", as when systemd sets it.
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "WATCHDOG_USEC=400000", "WATCHDOG_PID=")
	proc := &testutil.Process{Cmd: cmd}
	cmd.Stdout, cmd.Stderr = proc, proc
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	readState := func() string {
		buf := make([]byte, 256)
		notify.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v\n%s", err, proc.Output())
		}
		return string(buf[:n])
	}
	if s := readState(); s != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", s)
	}
	// READY means bound: connecting now must work at once.
	for _, ep := range []string{inbound, outbound} {
		c, err := net.Dial("tcp", strings.TrimPrefix(ep, "tcp://"))
		if err != nil {
			t.Fatalf("READY sent before %s was bound: %v", ep, err)
		}
		c.Close()
	}
	if s := readState(); s != "WATCHDOG=1" {
		t.Errorf("watchdog notification %q, want WATCHDOG=1", s)
	}

	relayOne(t, inbound, outbound, "before rotation")
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `fedmsg_relay_relayed_total `) {
		t.Errorf("metrics lack relayed counter:\n%s", body)
	}
	// The deprecated name still sizes the one budget, with a warning.
	if !strings.Contains(string(body), "\nfedmsg_relay_buffer_bytes 33554432\n") || !strings.Contains(string(body), "\nfedmsg_relay_buffer_used_bytes ") {
		t.Errorf("metrics lack the budget's limit (33554432) or use:\n%s", body)
	}
	waitFile(t, logPath, "inbound_buffer_bytes: deprecated: use buffer_bytes")

	// logrotate without copytruncate: move the file, then SIGHUP.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFile(t, logPath, "reloaded")
	cmd.Process.Signal(syscall.SIGTERM)
	for {
		s := readState()
		if s == "STOPPING=1" {
			break
		}
		if s != "WATCHDOG=1" {
			t.Fatalf("unexpected notification %q", s)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, proc.Output())
	}
	rotated, _ := os.ReadFile(logPath + ".1")
	current, _ := os.ReadFile(logPath)
	if !strings.Contains(string(rotated), "relaying") || strings.Contains(string(rotated), "drained") {
		t.Errorf("rotated log:\n%s", rotated)
	}
	if !strings.Contains(string(current), "drained") {
		t.Errorf("new log lacks the shutdown lines:\n%s", current)
	}
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never contained %q", path, want)
}

// relayOne sends a message through the relay with libzmq peers, retrying
// until the subscriber has joined.
func relayOne(t *testing.T, inbound, outbound, text string) {
	t.Helper()
	sub, _ := zmq.NewSocket(zmq.SUB)
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetSubscribe("")
	sub.SetRcvtimeo(50 * time.Millisecond)
	if err := sub.Connect(outbound); err != nil {
		t.Fatal(err)
	}
	pub, _ := zmq.NewSocket(zmq.PUB)
	defer pub.Close()
	pub.SetLinger(0)
	if err := pub.Connect(inbound); err != nil {
		t.Fatal(err)
	}
	topic := "org.fedoraproject.test.lifecycle"
	body := fmt.Sprintf(`{"topic": %q, "msg": {"text": %q}}`, topic, text)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pub.SendMessage(topic, body)
		if m, err := sub.RecvMessage(0); err == nil && m[1] == body {
			return
		}
	}
	t.Fatalf("message %q never came through", text)
}

// Signals interrupt libzmq's system calls (the Go runtime itself preempts
// threads with SIGURG); the relay must treat that as "nothing yet".
func TestSurvivesSignalStorm(t *testing.T) {
	inbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	outbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	cfg := testutil.WriteFile(t, "relay.yaml", fmt.Sprintf("relay_inbound: %s\nrelay_outbound: %s\n", inbound, outbound))
	proc := testutil.Start(t, relayBinary(t), "--config", cfg)
	proc.WaitOutput(t, "relaying", 10*time.Second)
	stop := make(chan struct{})
	stormDone := make(chan struct{})
	go func() {
		defer close(stormDone)
		for {
			select {
			case <-stop:
				return
			default:
				_ = proc.Cmd.Process.Signal(syscall.SIGURG)
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	relayOne(t, inbound, outbound, "before the storm")
	sub, _ := zmq.NewSocket(zmq.SUB)
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetSubscribe("")
	sub.SetRcvtimeo(5 * time.Second)
	if err := sub.Connect(outbound); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // subscription reaches the relay
	xsub, _ := zmq.NewSocket(zmq.XPUB) // tells us when the relay has subscribed
	defer xsub.Close()
	xsub.SetLinger(0)
	if err := xsub.Connect(inbound); err != nil {
		t.Fatal(err)
	}
	if _, err := xsub.Recv(0); err != nil {
		t.Fatal(err)
	}
	topic := "org.fedoraproject.test.storm"
	for i := 0; i < 500; i++ {
		body := fmt.Sprintf(`{"topic": %q, "msg": {"i": %d}}`, topic, i)
		if _, err := xsub.SendMessage(topic, body); err != nil {
			t.Fatal(err)
		}
		m, err := sub.RecvMessage(0)
		if err != nil || m[1] != body {
			t.Fatalf("message %d under a signal storm: %q, %v\n%s", i, m, err, proc.Output())
		}
	}
	close(stop)
	<-stormDone
	if strings.Contains(proc.Output(), "relay failed") || proc.Cmd.ProcessState != nil {
		t.Fatalf("relay stopped under signals:\n%s", proc.Output())
	}
}
