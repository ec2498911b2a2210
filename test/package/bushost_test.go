package packagetest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// TestOnBusHost installs the packages through dnf on one booted host, as on
// Fedora's bus host, and runs three stories on it in order (one boot for all):
// co-installation with Python fedmsg, the one-host round trip with the
// packaged relay.yaml, restarts and an upgrade that lose nothing (socket
// activation), and the nagios/NRPE check on the monitoring socket.
// The host has a network of its own, so the relay binds its real ports.
func TestOnBusHost(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "rpmbuild", "createrepo_c")
	h := host.Boot(t, "pkg-bus", host.WithPrivateNetwork())
	r := buildRPMs(t)
	rebuilt := rebuildRPMs(t)
	if err := h.UseRepo(host.LocalRepo(t, append([]string{r.Main, r.Unit, r.Clients}, standInRPMs(t)...))); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		run  func(*testing.T, *host.Host, builtRPMs)
	}{
		{"coinstall-with-python-fedmsg", coinstallWithPythonFedmsg},
		{"coinstall-with-python-fedmsg-1.x", coinstallWithPythonFedmsg1},
		{"roundtrip-after-install", roundtripAfterInstall},
		{"restarts-lose-nothing", func(t *testing.T, h *host.Host, _ builtRPMs) { restartsLoseNothing(t, h, rebuilt(t)) }},
		{"nrpe-check", nrpeCheck},
	} {
		if !t.Run(step.name, func(t *testing.T) { step.run(t, h, r) }) {
			return // each story starts from the state the previous one left
		}
	}
}

// standInRPMs builds the test-only stand-ins of Python fedmsg's packages
// (testdata/python-fedmsg-standin.spec) in both layouts: fedmsg 0.19.0's
// python3-fedmsg and fedmsg-relay, and fedmsg 1.1.7's python3-fedmsg.
func standInRPMs(t *testing.T) []string {
	t.Helper()
	top := t.TempDir()
	out := filepath.Join(top, "RPMS")
	for _, merged := range []string{"0", "1"} {
		run(t, "rpmbuild", "-bb", "--define", "_topdir "+top, "--define", "_rpmdir "+out, "--define", "merged "+merged,
			"--define", "_build_name_fmt %%{NAME}-%%{VERSION}.rpm", repoPath("test/package/testdata/python-fedmsg-standin.spec"))
	}
	rpms, _ := filepath.Glob(filepath.Join(out, "*.rpm"))
	if len(rpms) != 3 {
		t.Fatalf("stand-in RPMs: %v, want python3-fedmsg 0.19.0 and 1.1.7, fedmsg-relay 0.19.0", rpms)
	}
	return rpms
}

// coinstallWithPythonFedmsg: a host running Python fedmsg's hub, with its old
// fedmsg-relay subpackage installed, gets this relay with `dnf upgrade
// fedmsg-relay`; the hub keeps running throughout, the SOP's restart gives a
// new relay process, its end-to-end check works with the Go clients in
// /usr/libexec/fedmsg-relay, the clients subpackage is refused while python3-fedmsg
// owns the command names, and `rpm -e fedmsg-relay` leaves the hub alone.
func coinstallWithPythonFedmsg(t *testing.T, h *host.Host, r builtRPMs) {
	h.MustExec("dnf", "-y", "install", "python3-fedmsg-0.19.0", "fedmsg-relay-0.19.0")
	h.MustExec("systemctl", "start", "fedmsg-hub")
	hub := mainPID(t, h, "fedmsg-hub")

	// `dnf install` leaves an installed name alone; upgrade is the admin's step.
	// --best as Fedora's dnf.conf has it (Debian's skips an upgrade that needs a
	// new package). The exclude makes this an EPEL 7 host, whose repositories
	// have no fedmsg 1.x: this repository has both.
	h.MustExec("dnf", "-y", "upgrade", "--best", "--exclude=python3-fedmsg-1.1.7", "fedmsg-relay")
	if got := strings.TrimSpace(h.MustExec("rpm", "-q", "--qf", "%{EPOCH}:%{VERSION}-%{RELEASE} %{ARCH}", "fedmsg-relay")); got != r.EVR()+" x86_64" {
		t.Fatalf("after dnf upgrade fedmsg-relay: %q installed, want this package (%s)", got, r.EVR())
	}
	for path, owner := range map[string]string{
		"/usr/bin/fedmsg-logger":                 "python3-fedmsg",
		"/usr/bin/fedmsg-hub":                    "python3-fedmsg",
		"/usr/libexec/fedmsg-relay/fedmsg-relay": "fedmsg-relay",
	} {
		if got := strings.TrimSpace(h.MustExec("rpm", "-qf", "--qf", "%{NAME}", path)); got != owner {
			t.Errorf("%s owned by %q, want %s", path, got, owner)
		}
	}
	if _, err := os.Lstat(h.Path("/usr/bin/fedmsg-relay")); !os.IsNotExist(err) {
		t.Errorf("the Python relay's /usr/bin/fedmsg-relay is still there after the upgrade (%v)", err)
	}

	h.MustExec("systemctl", "start", "fedmsg-relay")
	sopRestart(t, h)
	if now := mainPID(t, h, "fedmsg-hub"); now != hub {
		t.Errorf("fedmsg-hub MainPID %s after installing and restarting the relay, was %s", now, hub)
	}
	// The SOP's end-to-end check, with the Go clients the daemon package
	// carries where python3-fedmsg owns the names in /usr/bin.
	tailed(t, h, []string{"/usr/libexec/fedmsg-relay/fedmsg-tail"},
		"/usr/libexec/fedmsg-relay/fedmsg-logger", "--message", "beside python fedmsg")

	out, err := h.Exec("dnf", "-y", "install", "fedmsg-relay-clients")
	if err == nil || !strings.Contains(out, "conflicts with python3-fedmsg") {
		t.Errorf("dnf install fedmsg-relay-clients beside python3-fedmsg: %v, want a conflict\n%s", err, out)
	}

	// fedmsg-relay-unit came with it (python3-fedmsg 0.x has no relay unit).
	h.MustExec("rpm", "-e", "--force-debian", "fedmsg-relay", "fedmsg-relay-unit")
	if out, _ := h.Exec("systemctl", "is-active", "fedmsg-relay"); strings.TrimSpace(out) == "active" {
		t.Errorf("fedmsg-relay still active after rpm -e")
	}
	if now := mainPID(t, h, "fedmsg-hub"); now != hub {
		t.Errorf("fedmsg-hub MainPID %s after rpm -e fedmsg-relay, was %s", now, hub)
	}
}

// coinstallWithPythonFedmsg1: fedmsg 1.x's python3-fedmsg owns
// fedmsg-relay.service itself (a link to its fedmsg-relay-3.service). `dnf
// install fedmsg-relay` beside it brings no unit file of its own, and the
// package's drop-in makes that unit run this relay, hardened; the hub keeps
// running, the SOP's restart works, and removing the relay leaves the hub.
func coinstallWithPythonFedmsg1(t *testing.T, h *host.Host, r builtRPMs) {
	h.MustExec("dnf", "-y", "upgrade", "--best", "python3-fedmsg")
	hub := mainPID(t, h, "fedmsg-hub")
	h.MustExec("dnf", "-y", "install", "fedmsg-relay")
	if out, err := h.Exec("rpm", "-q", "fedmsg-relay-unit"); err == nil {
		t.Errorf("fedmsg-relay-unit installed beside python3-fedmsg 1.x: %s", out)
	}
	// Fedora's systemd reloads itself after such a transaction (rpm file
	// triggers); Debian's rpm has none.
	h.MustExec("systemctl", "daemon-reload")
	h.MustExec("systemctl", "start", "fedmsg-relay")
	props := h.MustExec("systemctl", "show", "fedmsg-relay", "-p", "FragmentPath,DropInPaths")
	// (/lib/systemd on Debian, /usr/lib/systemd on Fedora.)
	if !regexp.MustCompile(`(?m)^FragmentPath=\S*/systemd/system/fedmsg-relay-3\.service$`).MatchString(props) ||
		!strings.Contains(props, "/systemd/system/fedmsg-relay.service.d/50-fedmsg-relay.conf") {
		t.Errorf("fedmsg-relay: %s, want python3-fedmsg's unit with this package's drop-in", props)
	}
	sopRestart(t, h)
	tailed(t, h, []string{"/usr/libexec/fedmsg-relay/fedmsg-tail"},
		"/usr/libexec/fedmsg-relay/fedmsg-logger", "--message", "beside python fedmsg 1.x")
	h.MustExec("dnf", "-y", "remove", "fedmsg-relay")
	if now := mainPID(t, h, "fedmsg-hub"); now != hub {
		t.Errorf("fedmsg-hub MainPID %s after dnf remove fedmsg-relay, was %s", now, hub)
	}
	if _, err := os.Lstat(h.Path("/usr/lib/systemd/system/fedmsg-relay.service")); err != nil {
		t.Errorf("python3-fedmsg's fedmsg-relay.service gone with fedmsg-relay: %v", err)
	}
}

// roundtripAfterInstall: on a host without Python fedmsg, `dnf install
// fedmsg-relay fedmsg-relay-clients`, start the service with the packaged
// relay.yaml, and `echo ... | fedmsg-logger` reaches fedmsg-tail, both on
// their loopback defaults.
func roundtripAfterInstall(t *testing.T, h *host.Host, _ builtRPMs) {
	h.MustExec("systemctl", "stop", "fedmsg-hub")
	h.MustExec("dnf", "-y", "remove", "python3-fedmsg")
	h.MustExec("dnf", "-y", "install", "fedmsg-relay", "fedmsg-relay-clients")
	h.MustExec("rpm", "-q", "fedmsg-relay-unit") // no python3-fedmsg to provide the unit
	if got, want := readFile(t, h.Path("/etc/fedmsg-relay/relay.yaml")), readFile(t, repoPath("rpm/relay.yaml")); got != want {
		t.Fatalf("installed relay.yaml differs from rpm/relay.yaml:\n%s", got)
	}
	h.MustExec("systemctl", "start", "fedmsg-relay")
	tailed(t, h, []string{"fedmsg-tail"}, "sh", "-c", `echo "hello from $(hostname)" | fedmsg-logger`)
}

// nrpeCheck: with the production settings (real ports, log file, monitoring
// socket), `fedmsg-logger --confirm` is acknowledged and seen by fedmsg-tail,
// and the nagios plugin logic Fedora ran over NRPE, run as user nrpe in group
// fedmsg, reads the status socket: OK for the relay's consumer and producer,
// CRITICAL for a missing one; a user outside group fedmsg is refused.
func nrpeCheck(t *testing.T, h *host.Host, _ builtRPMs) {
	const socket = "/run/fedmsg/monitoring-fedmsg-relay.socket"
	config := `relay_inbound: [tcp://*:9941, tcp://*:3998]
relay_outbound: tcp://*:3999
relay_inbound_confirm: tcp://*:9942
log_file: /var/log/fedmsg/fedmsg-relay.log
metrics_address: 127.0.0.1:9943
monitoring_endpoint: ipc://` + socket + `
monitoring_interval: 1s
`
	// The SOP's port change: the relay and its socket are restarted
	// together, since the new ports need new sockets.
	writeRelayConfig(t, h, config, "9941", "3998", "3999", "9942")
	h.MustExec("/usr/libexec/fedmsg-relay/fedmsg-relay", "--check-config")
	h.MustExec("systemctl", "stop", "fedmsg-relay.service", "fedmsg-relay.socket")
	h.MustExec("systemctl", "start", "fedmsg-relay")
	tailed(t, h, []string{"fedmsg-tail", "--relay-outbound", "tcp://127.0.0.1:3999"},
		"fedmsg-logger", "--confirm", "--relay-confirm", "tcp://127.0.0.1:9942", "--message", "confirmed on the bus host")

	h.MustCopy(repoPath("test/package/testdata/check_fedmsg_consumers.py"), "/usr/local/lib/nagios/check_fedmsg_consumers")
	h.MustExec("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "nrpe")
	h.MustExec("usermod", "--append", "--groups", "fedmsg", "nrpe")
	check := func(user string, args ...string) (string, error) {
		return h.Exec(append([]string{"runuser", "-u", user, "--", "/usr/local/lib/nagios/check_fedmsg_consumers"}, args...)...)
	}
	for _, args := range [][]string{
		{"cp", "fedmsg-relay", "RelayConsumer", "MonitoringProducer"},
		{"exceptions", "fedmsg-relay", "RelayConsumer", "1", "10"},
		{"backlog", "fedmsg-relay", "RelayConsumer", "10", "50"},
	} {
		if out, err := check("nrpe", args...); err != nil || !strings.HasPrefix(out, "OK") {
			t.Errorf("as nrpe, check_fedmsg_consumers %s: %v, want OK\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := check("nrpe", "cp", "fedmsg-relay", "NoSuchConsumer"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("check for a consumer the relay does not have: %v, want CRITICAL\n%s", err, out)
	}
	if out, err := check("nobody", "cp", "fedmsg-relay", "RelayConsumer"); err == nil || !strings.Contains(out, "UNKNOWN") {
		t.Errorf("as nobody (not in group fedmsg): %v, want UNKNOWN\n%s", err, out)
	}
}

// writeRelayConfig installs relay.yaml and, as the Ansible role does, a
// drop-in giving fedmsg-relay.socket the same ports (ListenStream= values:
// tcp://*:PORT is PORT), and reloads systemd.
func writeRelayConfig(t *testing.T, h *host.Host, config string, listen ...string) {
	t.Helper()
	sockets := "[Socket]\nListenStream=\n"
	for _, l := range listen {
		sockets += "ListenStream=" + l + "\n"
	}
	for path, data := range map[string]string{
		"/etc/fedmsg-relay/relay.yaml":                         config,
		"/etc/systemd/system/fedmsg-relay.socket.d/ports.conf": sockets,
	} {
		if err := h.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.MustExec("systemctl", "daemon-reload")
}

// tailed starts fedmsg-tail (tail, plus --count 1) inside the host and runs
// send until the message arrives: PUB/SUB drops what is sent before the
// subscription is up, so one send is not a test. It fails the test when send
// fails or nothing arrives within a minute.
func tailed(t *testing.T, h *host.Host, tail []string, send ...string) {
	t.Helper()
	var wg sync.WaitGroup
	var out string
	var err error
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		out, err = h.Exec(append(tail, "--count", "1", "--timeout", "60s")...)
	}()
	defer wg.Wait()
	for {
		if sendOut, sendErr := h.Exec(send...); sendErr != nil {
			t.Errorf("%s: %v\n%s", strings.Join(send, " "), sendErr, sendOut)
			return
		}
		select {
		case <-done:
			if err != nil || !strings.Contains(out, ".logger.log ") {
				t.Errorf("%s: %v, want the logger's message\n%s", strings.Join(tail, " "), err, out)
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// sopRestart checks the running relay's process, restarts it as the SOP
// does and checks that a new process took over.
func sopRestart(t *testing.T, h *host.Host) {
	t.Helper()
	relay := mainPID(t, h, "fedmsg-relay")
	checkRelayProcess(t, h, relay)
	h.MustExec("service", "fedmsg-relay", "restart")
	if again := mainPID(t, h, "fedmsg-relay"); again == relay {
		t.Errorf("service fedmsg-relay restart: MainPID still %s", relay)
	} else {
		checkRelayProcess(t, h, again)
	}
}

// mainPID returns a running service's MainPID, failing the test when it is
// not active.
func mainPID(t *testing.T, h *host.Host, unit string) string {
	t.Helper()
	props := map[string]string{}
	for _, line := range strings.Split(h.MustExec("systemctl", "show", unit, "-p", "ActiveState,MainPID"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	if props["ActiveState"] != "active" || props["MainPID"] == "0" {
		t.Fatalf("%s: %s", unit, fmt.Sprint(props))
	}
	return props["MainPID"]
}
