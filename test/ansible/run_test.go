package ansible

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// testHost is a booted host and its addresses as the inventory gives them.
type testHost struct {
	*host.Host
	address string // loopback address of its relay, if it runs one (hosts share the network)
}

// fixture is three throw-away hosts (two that can run the relay, one plain) and the
// inventory the playbooks run with.
type fixture struct {
	relayA, relayB, plain *testHost
	ports                 relayPorts
	dir                   string // inventory directory
	clients               string // directory of fedmsg-logger and fedmsg-tail
}

type relayPorts struct {
	inbound, outbound, confirm, metrics int
}

// freePorts finds n TCP ports free on every one of addrs.
func freePorts(t *testing.T, n int, addrs ...string) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", addrs[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		free := true
		for _, addr := range addrs[1:] {
			other, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
			if err != nil {
				free = false
				break
			}
			other.Close()
		}
		l.Close()
		if free {
			ports = append(ports, port)
		}
	}
	return ports
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	host.NeedTools(t, "ansible-playbook", "createrepo_c", "rpm", "rpmbuild", "go", "/usr/bin/python3")
	repo := localRepo(t, relayRPMs(t))
	clients := buildClients(t)

	f := &fixture{
		relayA:  bootHost(t, "ans-relay-a", "127.0.0.2", repo),
		relayB:  bootHost(t, "ans-relay-b", "127.0.0.3", repo),
		plain:   bootHost(t, "ans-plain", "", repo),
		dir:     t.TempDir(),
		clients: clients,
	}
	p := freePorts(t, 4, f.relayA.address, f.relayB.address)
	f.ports = relayPorts{inbound: p[0], outbound: p[1], confirm: p[2], metrics: p[3]}
	f.writeInventory(t, f.relayA, f.relayB)
	return f
}

// bootHost boots a host whose package sources include repo (a local dnf repository).
func bootHost(t *testing.T, name, address, repo string, opts ...host.Option) *testHost {
	t.Helper()
	h := &testHost{Host: host.Boot(t, name, opts...), address: address}
	// The host's package sources, as a Fedora host has its own; gpgcheck is off because
	// the repository is built by this test.
	for _, f := range mustGlob(t, filepath.Join(repo, "*.rpm")) {
		h.MustCopy(f, "/srv/fedmsg-test-repo/"+filepath.Base(f))
	}
	for _, f := range mustGlob(t, filepath.Join(repo, "repodata", "*")) {
		h.MustCopy(f, "/srv/fedmsg-test-repo/repodata/"+filepath.Base(f))
	}
	if err := h.WriteFile("/etc/yum.repos.d/fedmsg-test.repo", []byte(
		"[fedmsg-test]\nname=fedmsg-relay under test\nbaseurl=file:///srv/fedmsg-test-repo\ngpgcheck=0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v (%d matches)", pattern, err, len(m))
	}
	return m
}

// buildClients builds fedmsg-logger and fedmsg-tail, the tools a sysadmin checks the bus
// with; they read a host's /etc/fedmsg.d through FEDMSG_CONFIG.
func buildClients(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/fedmsg-logger", "./cmd/fedmsg-tail")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build client tools: %v\n%s", err, out)
	}
	return dir
}

// writeInventory makes relay the active relay and retiring the host being moved away
// from (nil outside a move). All three hosts get relay.py.
func (f *fixture) writeInventory(t *testing.T, relay, retiring *testHost) {
	t.Helper()
	line := func(h *testHost) string {
		s := fmt.Sprintf("%s ansible_nsenter_pid=%d", h.Name, h.Pid())
		if h.address != "" {
			s += fmt.Sprintf(` fedmsg_relay_client_networks='[{"name": "lo", "address": "%s"}]'`+
				" fedmsg_relay_bind_address=%s fedmsg_relay_metrics_address=%s:%d",
				h.address, h.address, h.address, f.ports.metrics)
		}
		return s + "\n"
	}
	var b strings.Builder
	b.WriteString("[fedmsg_relays]\n" + line(relay))
	b.WriteString("[fedmsg_relays_retiring]\n")
	if retiring != nil {
		b.WriteString(line(retiring))
	}
	b.WriteString("[fedmsg_hosts]\n")
	for _, h := range []*testHost{f.relayA, f.relayB, f.plain} {
		if h != relay && h != retiring {
			b.WriteString(line(h))
		}
	}
	fmt.Fprintf(&b, `[fedmsg_hosts:children]
fedmsg_relays
fedmsg_relays_retiring
[all:vars]
ansible_connection=community.docker.nsenter
ansible_python_interpreter=/usr/bin/python3
# nsenter always enters as root: no sudo to become with (production plays use it).
ansible_become=false
fedmsg_base_environment=dev
fedmsg_base_topic_prefix=org.fedoraproject
[fedmsg_relays:vars]
fedmsg_relay_inbound_ports=[%d]
fedmsg_relay_outbound_port=%d
fedmsg_relay_confirm_port=%d
fedmsg_relay_topic_prefix=org.fedoraproject
fedmsg_relay_log_file=/var/log/fedmsg/fedmsg-relay.log
fedmsg_relay_monitoring_endpoint=ipc:///run/fedmsg/monitoring-fedmsg-relay.socket
`, f.ports.inbound, f.ports.outbound, f.ports.confirm)
	if err := os.WriteFile(filepath.Join(f.dir, "hosts"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// play runs a playbook against the fixture's inventory and returns its report; a failed
// run fails the test.
func (f *fixture) play(t *testing.T, playbook string, args ...string) *playbookReport {
	t.Helper()
	report, _ := f.playOutput(t, playbook, args...)
	return report
}

// playOutput is play that also returns everything ansible-playbook printed.
func (f *fixture) playOutput(t *testing.T, playbook string, args ...string) (*playbookReport, string) {
	t.Helper()
	start := time.Now()
	cmd := ansibleCmd(append([]string{"ansible-playbook", "-i", filepath.Join(f.dir, "hosts"), "playbooks/" + playbook}, args...)...)
	cmd.Env = append(cmd.Env, "ANSIBLE_STDOUT_CALLBACK=json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	report, perr := parseReport(out)
	if err != nil || perr != nil {
		failures, _ := hostFailures(out)
		t.Fatalf("ansible-playbook %s %v: %v %v\nfailures: %v\n%s", playbook, args, err, perr, failures, stderr.String())
	}
	t.Logf("%s %v in %s:\n%s", playbook, args, time.Since(start).Round(100*time.Millisecond), report.summary())
	return report, string(out) + stderr.String()
}

// relayProcess returns the relay's main PID and its user inside h.
func relayProcess(t *testing.T, h *testHost) (pid, user string) {
	t.Helper()
	pid = strings.TrimSpace(h.MustExec("systemctl", "show", "--property=MainPID", "--value", "fedmsg-relay.service"))
	if pid == "0" || pid == "" {
		t.Fatalf("%s: fedmsg-relay has no main process", h.Name)
	}
	return pid, strings.TrimSpace(h.MustExec("ps", "-o", "user=", "-p", pid))
}

// relayStarts counts how often systemd has reported fedmsg-relay.service started on h.
// (journalctl 252 returns nothing for --after-cursor combined with these matches, so
// callers take the difference of two counts.)
func relayStarts(t *testing.T, h *testHost) int {
	t.Helper()
	// 39f53479... is systemd's "unit started" catalog message id.
	out := h.MustExec("journalctl", "--no-pager", "-o", "cat",
		"MESSAGE_ID=39f53479d3a045ac8e11786248231fbf", "UNIT=fedmsg-relay.service")
	return strings.Count(out, "\n")
}

// readClientConfig loads h's /etc/fedmsg.d/relay.py (see readRelayPy).
func readClientConfig(t *testing.T, h *testHost) map[string]any {
	t.Helper()
	var config map[string]any
	readRelayPy(t, h.Path("/etc/fedmsg.d/relay.py"), &config)
	return config
}

// readRelayPy loads a relay.py into config with the system Python, as fedmsg's config
// loader does (run the file, take its `config`).
func readRelayPy(t *testing.T, path string, config any) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c",
		"import json, runpy, sys; print(json.dumps(runpy.run_path(sys.argv[1])['config']))", path).CombinedOutput()
	if err != nil {
		t.Fatalf("%s does not load in Python: %v\n%s", path, err, out)
	}
	if err := json.Unmarshal(out, config); err != nil {
		t.Fatalf("%s config: %v\n%s", path, err, out)
	}
}

// sendThroughRelay sends messages with the fedmsg-logger a host would use (its relay.py,
// confirmed delivery) until a fedmsg-tail subscribed with the same config receives one,
// and returns what fedmsg-tail printed.
func (f *fixture) sendThroughRelay(t *testing.T, from *testHost) string {
	t.Helper()
	env := append(os.Environ(), "FEDMSG_CONFIG="+from.Path("/etc/fedmsg.d"))
	tail := exec.Command(filepath.Join(f.clients, "fedmsg-tail"), "--count", "1", "--timeout", "20s", "--json")
	tail.Env = env
	var tailOut strings.Builder
	tail.Stdout, tail.Stderr = &tailOut, &tailOut
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tail.Wait() }()
	// The subscription takes a moment to reach the relay (PUB/SUB slow joiner): repeat.
	for i := 1; ; i++ {
		logger := exec.Command(filepath.Join(f.clients, "fedmsg-logger"), "--confirm", "--json-input",
			"--modname", "ansible", "--topic", "check", "--message", fmt.Sprintf(`{"attempt": %d}`, i))
		logger.Env = env
		if out, err := logger.CombinedOutput(); err != nil {
			t.Errorf("fedmsg-logger --confirm with %s's config: %v\n%s", from.Name, err, out)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("fedmsg-tail with %s's config: %v\n%s", from.Name, err, tailOut.String())
			}
			if !strings.Contains(tailOut.String(), `"attempt"`) {
				t.Fatalf("fedmsg-tail got %q, want the message sent", tailOut.String())
			}
			t.Logf("message %d of fedmsg-logger reached fedmsg-tail: %s", i, strings.TrimSpace(tailOut.String()))
			return tailOut.String()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// TestRealHosts applies the playbooks to throw-away systemd hosts: one relay, two plain
// hosts, then moves the relay to one of them while a producer sends.
func TestRealHosts(t *testing.T) {
	f := newFixture(t)
	relay := f.relayA

	t.Run("first run", func(t *testing.T) {
		f.play(t, "site.yml")
		if state := strings.TrimSpace(relay.MustExec("systemctl", "is-active", "fedmsg-relay.service")); state != "active" {
			t.Fatalf("fedmsg-relay is %s", state)
		}
		if pid, user := relayProcess(t, relay); user != "fedmsg" {
			t.Errorf("fedmsg-relay (pid %s) runs as %q, want fedmsg", pid, user)
		}
		if enabled := strings.TrimSpace(relay.MustExec("systemctl", "is-enabled", "fedmsg-relay.service")); enabled != "enabled" {
			t.Errorf("fedmsg-relay is %s, want enabled", enabled)
		}
		f.checkSocketActivated(t, relay, f.ports)
	})
	if t.Failed() {
		return
	}

	t.Run("plain host's relay.py", func(t *testing.T) {
		config := readClientConfig(t, f.plain)
		want := map[string]any{
			"relay_inbound":         []any{fmt.Sprintf("tcp://%s:%d", relay.address, f.ports.inbound)},
			"relay_inbound_confirm": []any{fmt.Sprintf("tcp://%s:%d", relay.address, f.ports.confirm)},
			"endpoints":             map[string]any{"relay_outbound": []any{fmt.Sprintf("tcp://%s:%d", relay.address, f.ports.outbound)}},
			"environment":           "dev",
			"topic_prefix":          "org.fedoraproject",
		}
		if got, wantJSON := mustJSON(config), mustJSON(want); got != wantJSON {
			t.Errorf("relay.py config = %s\nwant %s", got, wantJSON)
		}
		if mode := strings.TrimSpace(f.plain.MustExec("stat", "-c", "%a %U:%G", "/etc/fedmsg.d/relay.py")); mode != "644 root:root" {
			t.Errorf("relay.py is %s, want 644 root:root", mode)
		}
		f.sendThroughRelay(t, f.plain)
	})

	t.Run("second run changes nothing", func(t *testing.T) {
		report := f.play(t, "site.yml")
		if changed := report.changedTasks(); len(changed) > 0 {
			t.Errorf("second run changed: %v", changed)
		}
	})

	t.Run("check mode reports no drift", func(t *testing.T) {
		report := f.play(t, "site.yml", "--check", "--diff")
		if changed := report.changedTasks(); len(changed) > 0 {
			t.Errorf("check mode after a converged run reports changes: %v", changed)
		}
	})

	t.Run("AMQP bridge, signing and NRPE checks", func(t *testing.T) { f.bridgeSigningNRPE(t, relay) })

	t.Run("changed variable restarts the relay once", func(t *testing.T) {
		startsBefore := relayStarts(t, relay)
		pidBefore, _ := relayProcess(t, relay)
		report := f.play(t, "site.yml", "-e", "fedmsg_relay_log_level=debug")
		if starts := relayStarts(t, relay) - startsBefore; starts != 1 {
			t.Errorf("fedmsg-relay started %d times, want exactly 1", starts)
		}
		if pidAfter, _ := relayProcess(t, relay); pidAfter == pidBefore {
			t.Errorf("fedmsg-relay still pid %s: not restarted", pidAfter)
		}
		if !strings.Contains(relay.MustExec("cat", "/etc/fedmsg-relay/relay.yaml"), "log_level: debug") {
			t.Error("relay.yaml lacks log_level: debug")
		}
		if changed := report.changedTasks(); len(changed) != 2 { // the template and its handler
			t.Errorf("changed tasks %v, want the relay.yaml template and the restart", changed)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("socket activation", func(t *testing.T) { f.socketActivation(t, relay) })
	if t.Failed() {
		return
	}

	t.Run("migration", func(t *testing.T) { f.migrate(t) })
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
