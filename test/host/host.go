// Package host boots a throw-away systemd host for tests: a Debian bookworm root
// filesystem (made once with debootstrap and cached as a tarball) booted with
// systemd-nspawn, following /work/shared/SYSTEMD-HOST.md.
//
// Usage:
//
//	h := host.Boot(t, "pkg-install")          // real systemd as PID 1, ready to use
//	h.MustCopy("build/x.rpm", "/var/tmp/x.rpm") // host file -> container path (not /tmp: tmpfs inside)
//	out := h.MustExec("systemctl", "is-active", "fedmsg-relay")
//	out, err := h.Exec("rpm", "-e", "x")      // error carries the command output
//	pid := h.Pid()                            // container init, as the host sees it
//
// Boot registers teardown with t.Cleanup, so the container is stopped and its
// cgroups removed even when the test fails; on failure the container's journal
// tail is logged first. The container shares the host's network (unless booted
// WithPrivateNetwork): its ports are host ports, so give each test its own.
//
// The root filesystem is cached as build/cache/rootfs-bookworm-<hash>.tar under
// the repository (override the directory with FEDMSG_TEST_CACHE); the hash covers
// the package set and mirror, so a different WithPackages set is another
// debootstrap (~60–80 s on first use). Prefer DefaultPackages. Concurrent test
// binaries share the cache through a file lock. The mirror is the one apt uses
// here (override with FEDMSG_TEST_MIRROR).
//
// Requires root, debootstrap, systemd-nspawn (systemd-container), nsenter,
// unshare and tar. Boot skips the test when one is missing, unless CI=true,
// where it fails it (see NeedTools).
package host

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DefaultPackages is the package set of the cached root filesystem, on top of
// debootstrap's minbase: systemd as init, python3 for Ansible, procps for
// /bin/kill (ExecReload), python3-apt for Ansible's apt module, rpm to install
// the packages under test and dnf for Ansible's dnf module (one root file
// system for every test package: each set costs a debootstrap), libzmq5 for
// the relay. ZeroMQ peers on TCP run on the host: the network is shared.
var DefaultPackages = []string{
	"systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "iproute2", "procps",
	"rpm", "dnf", "libzmq5",
}

// laterPackages are installed with apt-get in the new root after debootstrap:
// polkitd, which firewalld needs, fails to configure inside debootstrap, and
// firewalld needs netbase's /etc/protocols. firewalld is for the hosts that test the role's firewall rules, and masked
// on every other host: those share the machine's network, which a firewall
// inside them would change. monitoring-plugins-basic gives the NRPE checks
// the relay role installs their check_procs. python3-zmq (which fails to
// configure inside debootstrap) is for peers that must run inside a host,
// such as the nagios checks on the relay's ipc:// monitoring socket.
var laterPackages = []string{"firewalld", "netbase", "monitoring-plugins-basic", "python3-zmq"}

const (
	suite          = "bookworm"
	defaultMirror  = "http://deb.debian.org/debian"
	bootTimeout    = 60 * time.Second
	stopTimeout    = 20 * time.Second
	cgroupRoot     = "/sys/fs/cgroup"
	journalOnError = "80"
)

// cgroupHierarchies are the hierarchies a hybrid-cgroup host gives the container;
// both get a dedicated subtree so teardown can remove everything.
var cgroupHierarchies = []string{"systemd", "unified"}

// Host is a booted systemd container.
type Host struct {
	// Name is the machine name (and hostname) of the container.
	Name string
	// Root is the container's root directory on the host.
	Root string

	t      testing.TB
	cgroup string // directory name under each hierarchy
	init   int
	nspawn *exec.Cmd
	exited chan struct{}
	log    string // nspawn's console output

	privateNetwork bool
}

type options struct {
	packages       []string
	privateNetwork bool
}

// Option changes how Boot builds the container.
type Option func(*options)

// WithPackages adds Debian packages to DefaultPackages. Each distinct set is
// cached separately, so prefer asking for them to be added to DefaultPackages.
func WithPackages(pkgs ...string) Option {
	return func(o *options) { o.packages = append(o.packages, pkgs...) }
}

// WithPrivateNetwork gives the host a network namespace of its own, with only
// a loopback interface, and leaves firewalld enabled in it.
func WithPrivateNetwork() Option {
	return func(o *options) { o.privateNetwork = true }
}

// NeedTools skips the test when a tool is missing from PATH, or fails it when
// CI=true (CI must have every tool installed).
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		skipOrFail(t, "missing tools: %s", strings.Join(missing, ", "))
	}
}

func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// Boot builds (or reuses) the cached root filesystem, unpacks a fresh copy, boots
// it as machine name and waits until systemd reports the system running.
// name must be a valid machine name, unique among concurrently running tests.
func Boot(t testing.TB, name string, opts ...Option) *Host {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "booting a systemd host needs root")
	}
	NeedTools(t, "debootstrap", "systemd-nspawn", "nsenter", "unshare", "tar")
	o := options{packages: append([]string(nil), DefaultPackages...)}
	for _, opt := range opts {
		opt(&o)
	}

	start := time.Now()
	tarball, err := rootfsTarball(o.packages)
	if err != nil {
		t.Fatalf("root filesystem: %v", err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "--numeric-owner", "-C", root, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", tarball, err, out)
	}

	if !o.privateNetwork {
		if err := os.Symlink("/dev/null", filepath.Join(root, "etc/systemd/system/firewalld.service")); err != nil {
			t.Fatalf("mask firewalld: %v", err)
		}
	}
	h := &Host{Name: name, Root: root, t: t, cgroup: "T-" + name, exited: make(chan struct{}),
		log: filepath.Join(filepath.Dir(root), "nspawn.log"), privateNetwork: o.privateNetwork}
	h.removeCgroups() // left over from a killed earlier run
	t.Cleanup(h.teardown)
	if err := h.start(); err != nil {
		t.Fatalf("boot %s: %v", name, err)
	}
	t.Logf("host %s: booted in %s (init pid %d)", name, time.Since(start).Round(10*time.Millisecond), h.init)
	return h
}

// start launches systemd-nspawn from a shell that first moves itself into the
// container's own cgroups, inside a private mount namespace with a tmpfs on
// /run/systemd (nspawn needs it there since the host has no systemd).
func (h *Host) start() error {
	logFile, err := os.Create(h.log)
	if err != nil {
		return err
	}
	defer logFile.Close()
	script := `set -e
for h in ` + strings.Join(cgroupHierarchies, " ") + `; do
	mkdir -p "` + cgroupRoot + `/$h/$CG"
	echo $$ > "` + cgroupRoot + `/$h/$CG/cgroup.procs"
done
mkdir -p /run/systemd
exec unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /run/systemd && exec systemd-nspawn -q -D "$ROOT" --boot --register=no --keep-unit -M "$NAME" $NETWORK'`
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "CG="+h.cgroup, "ROOT="+h.Root, "NAME="+h.Name, "NETWORK=")
	if h.privateNetwork {
		cmd.Env[len(cmd.Env)-1] = "NETWORK=--private-network"
	}
	cmd.Stdin = nil
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start systemd-nspawn: %w", err)
	}
	h.nspawn = cmd
	go func() { cmd.Wait(); close(h.exited) }()

	initProcs := filepath.Join(cgroupRoot, "systemd", h.cgroup, "payload", "init.scope", "cgroup.procs")
	deadline := time.Now().Add(bootTimeout)
	for h.init == 0 {
		if b, err := os.ReadFile(initProcs); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				h.init, _ = strconv.Atoi(f[0])
			}
		}
		if h.init != 0 {
			break
		}
		if err := h.waitStep(deadline); err != nil {
			return fmt.Errorf("waiting for container init: %w", err)
		}
	}
	for {
		out, _ := h.Exec("systemctl", "is-system-running")
		switch state := strings.TrimSpace(out); state {
		case "running":
			return nil
		case "degraded":
			failed, _ := h.Exec("systemctl", "--failed", "--no-legend")
			h.t.Logf("host %s: degraded, failed units:\n%s", h.Name, failed)
			return nil
		}
		if err := h.waitStep(deadline); err != nil {
			return fmt.Errorf("waiting for systemd: %w", err)
		}
	}
}

// waitStep sleeps a little, failing when nspawn exited or the deadline passed.
func (h *Host) waitStep(deadline time.Time) error {
	select {
	case <-h.exited:
		return fmt.Errorf("systemd-nspawn exited: %s", h.consoleTail())
	case <-time.After(100 * time.Millisecond):
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("timed out after %s: %s", bootTimeout, h.consoleTail())
	}
	return nil
}

func (h *Host) consoleTail() string {
	b, _ := os.ReadFile(h.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Pid returns the PID of the container's init (systemd) as the host sees it.
func (h *Host) Pid() int { return h.init }

// Exec runs a command inside the container (all of its namespaces) and returns
// its combined output. The error includes the output.
func (h *Host) Exec(args ...string) (string, error) {
	return h.ExecInput(nil, args...)
}

// ExecInput is Exec with stdin.
func (h *Host) ExecInput(stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(h.init), "-a", "--"}, args...)...)
	cmd.Stdin = stdin
	// A clean environment: the host's (PATH, GOFLAGS, ...) means nothing inside.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s in %s: %w\n%s", strings.Join(args, " "), h.Name, err, out.String())
	}
	return out.String(), nil
}

// MustExec is Exec that fails the test on error.
func (h *Host) MustExec(args ...string) string {
	h.t.Helper()
	out, err := h.Exec(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// Path returns the host path of a path inside the container.
func (h *Host) Path(p string) string { return filepath.Join(h.Root, p) }

// Copy copies a host file to dst inside the container, keeping its mode.
// Like WriteFile it writes to the root filesystem, under the container's
// mounts: files put in /tmp or /run (tmpfs inside) are not visible there.
func (h *Host) Copy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", h.Name, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("copy to %s: %w", h.Name, err)
	}
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", h.Name, err)
	}
	return h.WriteFile(dst, data, fi.Mode().Perm())
}

// MustCopy is Copy that fails the test on error.
func (h *Host) MustCopy(src, dst string) {
	h.t.Helper()
	if err := h.Copy(src, dst); err != nil {
		h.t.Fatal(err)
	}
}

// WriteFile writes data to path inside the container, creating parent
// directories (mode 0755, owned by root).
func (h *Host) WriteFile(path string, data []byte, perm os.FileMode) error {
	target := h.Path(path)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("write %s in %s: %w", path, h.Name, err)
	}
	if err := os.WriteFile(target, data, perm); err != nil {
		return fmt.Errorf("write %s in %s: %w", path, h.Name, err)
	}
	return os.Chmod(target, perm) // WriteFile's perm is filtered by the umask
}

// teardown stops the container and removes its cgroups; it runs from t.Cleanup.
func (h *Host) teardown() {
	if h.t.Failed() && h.init != 0 {
		if out, err := h.Exec("journalctl", "--no-pager", "-n", journalOnError); err == nil {
			h.t.Logf("host %s: journal tail:\n%s", h.Name, out)
		}
	}
	if h.nspawn != nil {
		h.nspawn.Process.Signal(syscall.SIGTERM) // nspawn powers the container off
		select {
		case <-h.exited:
		case <-time.After(stopTimeout):
			h.t.Logf("host %s: systemd-nspawn did not stop in %s, killing", h.Name, stopTimeout)
			syscall.Kill(-h.nspawn.Process.Pid, syscall.SIGKILL)
			<-h.exited
		}
	}
	if err := h.removeCgroups(); err != nil {
		h.t.Errorf("host %s: %v", h.Name, err)
	}
}

// removeCgroups kills whatever is left in the container's cgroups and removes
// them depth-first.
func (h *Host) removeCgroups() error {
	var errs []error
	for _, hier := range cgroupHierarchies {
		top := filepath.Join(cgroupRoot, hier, h.cgroup)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for attempt := 0; attempt < 50; attempt++ {
			for _, d := range dirs {
				killProcs(filepath.Join(d, "cgroup.procs"))
			}
			var left []string
			for i := len(dirs) - 1; i >= 0; i-- { // children come after parents in WalkDir order
				if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
					left = append(left, dirs[i])
				}
			}
			if len(left) == 0 {
				dirs = nil
				break
			}
			dirs = reverse(left)
			time.Sleep(100 * time.Millisecond)
		}
		if len(dirs) > 0 {
			errs = append(errs, fmt.Errorf("cgroups not removed: %s", strings.Join(dirs, " ")))
		}
	}
	return errors.Join(errs...)
}

func reverse(s []string) []string {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return s
}

func killProcs(procsFile string) {
	f, err := os.Open(procsFile)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if pid, err := strconv.Atoi(sc.Text()); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// rootfsTarball returns the cached root filesystem tarball for the package
// set, building it with debootstrap when missing.
func rootfsTarball(packages []string) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	mirror := aptMirror()
	key := sha256.Sum256([]byte(suite + "\n" + mirror + "\n" + strings.Join(packages, ",") + "\n" + strings.Join(laterPackages, ",")))
	tarball := filepath.Join(dir, "rootfs-"+suite+"-"+hex.EncodeToString(key[:6])+".tar")

	unlock, err := lockFile(tarball + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(tarball); err == nil {
		return tarball, nil
	}

	// One debootstrap at a time: they share the package cache, and two at
	// once on a small CI machine only make both slower.
	unlockBuild, err := lockFile(filepath.Join(dir, "debootstrap.lock"))
	if err != nil {
		return "", err
	}
	defer unlockBuild()

	build, err := os.MkdirTemp(dir, "debootstrap-")
	if err != nil {
		return "", fmt.Errorf("debootstrap dir: %w", err)
	}
	defer os.RemoveAll(build)
	root := filepath.Join(build, "root")
	// --cache-dir keeps the downloaded packages, so an interrupted run resumes.
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("debootstrap cache: %w", err)
	}
	cmd := exec.Command("debootstrap", "--variant=minbase", "--cache-dir="+debs,
		"--include="+strings.Join(packages, ","), suite, root, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("debootstrap %s: %w\n%s", mirror, err, tail(out, 3000))
	}
	if err := aptInstall(root, laterPackages); err != nil {
		return "", err
	}
	// No network inside: apt lists and the package cache are dead weight.
	os.RemoveAll(filepath.Join(root, "var/cache/apt/archives"))
	os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o755)
	tmp := filepath.Join(build, "rootfs.tar")
	if out, err := exec.Command("tar", "--numeric-owner", "-C", root, "-cf", tmp, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("pack root filesystem: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, tarball); err != nil {
		return "", fmt.Errorf("cache root filesystem: %w", err)
	}
	return tarball, nil
}

// aptInstall installs packages into the root file system with its own
// apt-get, from the mirror debootstrap configured.
func aptInstall(root string, packages []string) error {
	// The host's name servers for the download; the root keeps its own file.
	resolvConf := filepath.Join(root, "etc/resolv.conf")
	if own, err := os.ReadFile(resolvConf); err == nil {
		defer os.WriteFile(resolvConf, own, 0o644)
	} else {
		defer os.Remove(resolvConf)
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return fmt.Errorf("apt-get in the new root: %w", err)
	}
	if err := os.WriteFile(resolvConf, resolv, 0o644); err != nil {
		return fmt.Errorf("apt-get in the new root: %w", err)
	}
	script := `set -e
mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/proc"' EXIT
chroot "$ROOT" apt-get update -q
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
chroot "$ROOT" apt-get clean`
	cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh"}, packages...)...)
	cmd.Env = append(os.Environ(), "ROOT="+root)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s in the new root: %w\n%s", strings.Join(packages, " "), err, tail(out, 3000))
	}
	return nil
}

// lockFile takes an exclusive lock shared with other test processes; the
// returned function releases it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// cacheDir is $FEDMSG_TEST_CACHE or build/cache in the repository holding the
// working directory (go test runs in the package directory).
func cacheDir() (string, error) {
	if d := os.Getenv("FEDMSG_TEST_CACHE"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "build", "cache"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; set FEDMSG_TEST_CACHE")
		}
		dir = parent
	}
}

// aptMirror returns $FEDMSG_TEST_MIRROR or the Debian (not security) mirror
// apt is configured with, in deb822 (.sources) or one-line format.
func aptMirror() string {
	if m := os.Getenv("FEDMSG_TEST_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append(files, "/etc/apt/sources.list")
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorIn(string(b)); m != "" {
			return m
		}
	}
	return defaultMirror
}

// mirrorIn finds a URI serving the bookworm suite of the Debian archive proper,
// in one-line ("deb [options] URI SUITE COMPONENTS...") or deb822 stanzas.
func mirrorIn(sources string) string {
	var uris, suites []string
	match := func() string {
		for _, u := range uris {
			for _, s := range suites {
				if s == suite && isDebianArchive(u) {
					return u
				}
			}
		}
		return ""
	}
	for _, line := range strings.Split(sources+"\n", "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0: // end of a deb822 stanza
			if m := match(); m != "" {
				return m
			}
			uris, suites = nil, nil
		case f[0] == "deb" && len(f) >= 3:
			f = f[1:]
			if strings.HasPrefix(f[0], "[") {
				for len(f) > 1 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				f = f[1:]
			}
			if len(f) >= 2 && f[1] == suite && isDebianArchive(f[0]) {
				return f[0]
			}
		case f[0] == "URIs:":
			uris = f[1:]
		case f[0] == "Suites:":
			suites = f[1:]
		}
	}
	return ""
}

func isDebianArchive(uri string) bool {
	return strings.HasSuffix(strings.TrimSuffix(uri, "/"), "/debian")
}
