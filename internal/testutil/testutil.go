// Package testutil holds helpers for tests that drive real components: the
// relay binary, Debian's python3-zmq (a real libzmq peer) and free ports.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// PythonPath is Debian's interpreter, where python3-zmq lives (not the
// python3 that may come first on PATH).
const PythonPath = "/usr/bin/python3"

// InCI reports whether the tests run in CI, where missing tools are failures.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips the test when ok is false, except in CI where it fails:
// CI installs every tool, so a missing one is a broken set-up.
func Require(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("%s is required in CI", what)
	}
	t.Skipf("%s not available", what)
}

// Python returns the interpreter after checking that it imports zmq.
func Python(t testing.TB) string {
	t.Helper()
	err := exec.Command(PythonPath, "-c", "import zmq").Run()
	Require(t, err == nil, PythonPath+" with python3-zmq")
	return PythonPath
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process has not handed out before.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !ports[port] {
			ports[port] = true
			return port
		}
	}
}

// RepoRoot is the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary builds (once per test process) the command cmd/<name> and returns its path.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "fedmsg-relay-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./cmd/...")
		cmd.Dir = RepoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, name)
}

// Process is a running child whose output is kept for failure reports.
type Process struct {
	Cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitOutput waits until the output contains want.
func (p *Process) WaitOutput(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Output(), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q in output within %v:\n%s", want, timeout, p.Output())
}

// Start runs a command, killing it at the end of the test and printing its
// output if the test failed.
func Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(name, args...)}
	p.Cmd.Stdout, p.Cmd.Stderr = p, p
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if p.Cmd.ProcessState == nil {
			_ = p.Cmd.Process.Kill()
			_ = p.Cmd.Wait()
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), p.Output())
		}
	})
	return p
}

// WriteFile writes content to name in a fresh temporary directory.
func WriteFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// RelayEndpoints are a relay's sockets on loopback ports that were free.
type RelayEndpoints struct {
	Inbound, Outbound, Confirm string // tcp://127.0.0.1:PORT
	Metrics                    string // 127.0.0.1:PORT
}

// FreeRelayEndpoints picks a free port for each of a relay's sockets.
func FreeRelayEndpoints(t testing.TB) RelayEndpoints {
	t.Helper()
	tcp := func() string { return fmt.Sprintf("tcp://127.0.0.1:%d", FreePort(t)) }
	return RelayEndpoints{Inbound: tcp(), Outbound: tcp(), Confirm: tcp(), Metrics: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
}

// Config is the relay.yaml lines that bind them.
func (e RelayEndpoints) Config() string {
	return fmt.Sprintf("relay_inbound: %s\nrelay_outbound: %s\nrelay_inbound_confirm: %s\nmetrics_address: %s\n",
		e.Inbound, e.Outbound, e.Confirm, e.Metrics)
}
