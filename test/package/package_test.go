// Package packagetest proves the RPM, its unit, SELinux module and logrotate
// file with the real tools: rpmbuild, rpm, rpmlint, the SELinux devel
// Makefile and semodule, systemd-analyze, logrotate with a running relay, and
// a booted systemd host (test/host) where the RPM is installed and the service
// driven as the SOP does.
//
// The RPMs are built once per run (rpm/build-rpm.sh --without check, the Go
// unit tests run elsewhere in the suite) into a temporary directory, offline
// (GOPROXY=off): Go modules come from the module cache.
package packagetest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// python is Debian's interpreter with python3-zmq (not whatever is on PATH).
const python = "/usr/bin/python3"

// repoRoot is the repository holding this package.
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

func repoPath(p string) string { return filepath.Join(repoRoot, p) }

// workDir holds what the tests share (RPMs, the relay binary); removed by TestMain.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fedmsg-relay-package-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// builtRPMs are the packages of one rpm/build-rpm.sh run.
type builtRPMs struct {
	SRPM, Main, Unit, Clients, SELinux string
	Epoch, Version, Release            string
}

// EVR is the packages' epoch:version-release, as dependencies on them read.
func (r builtRPMs) EVR() string { return r.Epoch + ":" + r.Version + "-" + r.Release }

var (
	rpmsOnce sync.Once
	rpms     builtRPMs
	rpmsErr  error
)

// buildRPMs runs rpm/build-rpm.sh once for all tests that need the RPMs.
func buildRPMs(t *testing.T) builtRPMs {
	t.Helper()
	needRPMTools(t)
	rpmsOnce.Do(func() { rpms, rpmsErr = rpmBuild("rpmbuild") })
	if rpmsErr != nil {
		t.Fatal(rpmsErr)
	}
	return rpms
}

// rebuildRPMs starts building the same tree again as release 2, the
// package upgrade an admin installs over buildRPMs' release 1, in the
// background (it overlaps a host's first steps); the returned function waits
// for it, and so does t's cleanup.
func rebuildRPMs(t *testing.T) func(*testing.T) builtRPMs {
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	var r builtRPMs
	var err error
	go func() {
		defer close(done)
		r, err = rpmBuild("rpmbuild-release2", "--define", "autorelease 2%{?dist}")
	}()
	return func(t *testing.T) builtRPMs {
		t.Helper()
		<-done
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func needRPMTools(t *testing.T) {
	host.NeedTools(t, "rpmbuild", "rpm", "go", "gcc", "git", "make", "bzip2")
}

// rpmBuild runs rpm/build-rpm.sh --without check with rpmbuild options args
// into workDir/dir.
func rpmBuild(dir string, args ...string) (builtRPMs, error) {
	out := filepath.Join(workDir, dir)
	cmd := exec.Command(repoPath("rpm/build-rpm.sh"), append([]string{"--without", "check"}, args...)...)
	cmd.Env = append(os.Environ(), "BUILD_DIR="+out, "GOPROXY=off", "GOFLAGS=")
	log, err := cmd.CombinedOutput()
	if err != nil {
		return builtRPMs{}, fmt.Errorf("rpm/build-rpm.sh: %w\n%s", err, tail(log, 6000))
	}
	var findErr error
	find := func(pattern string) string {
		m, _ := filepath.Glob(filepath.Join(out, pattern))
		if len(m) != 1 {
			findErr = fmt.Errorf("want one %s, got %v; build log:\n%s", pattern, m, tail(log, 3000))
			return ""
		}
		return m[0]
	}
	r := builtRPMs{
		SRPM:    find("SRPMS/fedmsg-relay-*.src.rpm"),
		Main:    find("RPMS/*/fedmsg-relay-[0-9]*.rpm"),
		Unit:    find("RPMS/noarch/fedmsg-relay-unit-[0-9]*.noarch.rpm"),
		Clients: find("RPMS/*/fedmsg-relay-clients-[0-9]*.rpm"),
		SELinux: find("RPMS/noarch/fedmsg-relay-selinux-*.noarch.rpm"),
	}
	if findErr != nil {
		return builtRPMs{}, findErr
	}
	evr := run(nil, "rpm", "-qp", "--qf", "%{EPOCH} %{VERSION} %{RELEASE}", r.Main)
	fmt.Sscan(evr, &r.Epoch, &r.Version, &r.Release)
	return r, nil
}

// built holds the commands built by command, one build each per run.
var built sync.Map // name -> *builtCommand

type builtCommand struct {
	once sync.Once
	path string
	err  error
}

// command builds ./cmd/NAME once (the relay with cgo and libzmq) for tests
// that run it directly.
func command(t *testing.T, name string) string {
	t.Helper()
	host.NeedTools(t, "go", "gcc")
	v, _ := built.LoadOrStore(name, &builtCommand{})
	b := v.(*builtCommand)
	b.once.Do(func() {
		bin := filepath.Join(workDir, name)
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
			return
		}
		b.path = bin
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// run runs a command and returns its stdout; with t non-nil a failure is
// fatal, otherwise it returns "".
func run(t *testing.T, name string, args ...string) string {
	if t != nil {
		t.Helper()
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if t != nil {
			t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return ""
	}
	return stdout.String()
}

// rpmMacrosHome returns a HOME whose ~/.rpmmacros holds the test-only Fedora
// macros, for tools (rpmspec, rpmlint) that parse the spec themselves.
func rpmMacrosHome(t *testing.T, sourceDir string) string {
	t.Helper()
	home := t.TempDir()
	macros, err := os.ReadFile(repoPath("rpm/debian-test/macros"))
	if err != nil {
		t.Fatal(err)
	}
	macros = append(macros, fmt.Sprintf("\n%%_sourcedir %s\n", sourceDir)...)
	if err := os.WriteFile(filepath.Join(home, ".rpmmacros"), macros, 0o644); err != nil {
		t.Fatal(err)
	}
	return home
}

// freePorts returns n TCP ports that were free on the loopback a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var listeners []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range listeners {
		l.Close()
	}
	return ports
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
