package packagetest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// TestInstalledOnSystemdHost installs the RPM on a booted systemd host and
// runs the service as the SOP does: the fedmsg user exists, the Type=notify
// service becomes active as user fedmsg with its hardening in force, a
// message goes through, `service fedmsg-relay restart` gives a new process
// that serves, `systemctl reload` reopens the log, and `rpm -e` stops and
// removes it. The host shares this machine's network: the test config uses
// free loopback ports.
func TestInstalledOnSystemdHost(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, python)
	h := host.Boot(t, "pkg-relay") // while the RPMs build in other tests
	r := buildRPMs(t)

	// Debian's rpmdb knows none of the Requires (libzmq5 and systemd are
	// there as .debs); Debian's rpm also wants --force-debian to install.
	h.MustCopy(r.Main, "/var/tmp/fedmsg-relay.rpm")
	h.MustCopy(r.Unit, "/var/tmp/fedmsg-relay-unit.rpm")
	if out := h.MustExec("rpm", "-i", "--nodeps", "--force-debian", "/var/tmp/fedmsg-relay.rpm", "/var/tmp/fedmsg-relay-unit.rpm"); strings.Contains(out, "error") || strings.Contains(out, "does not exist") {
		t.Errorf("rpm -i:\n%s", out)
	}
	passwd := strings.Split(strings.TrimSpace(h.MustExec("getent", "passwd", "fedmsg")), ":")
	if len(passwd) != 7 || !strings.HasSuffix(passwd[6], "nologin") {
		t.Fatalf("fedmsg user: %q, want a nologin system user", passwd)
	}
	if uid, _ := strconv.Atoi(passwd[2]); uid == 0 || uid >= 1000 {
		t.Errorf("fedmsg uid %d, want a system uid", uid)
	}

	ports := freePorts(t, 3)
	inbound := fmt.Sprintf("tcp://127.0.0.1:%d", ports[0])
	outbound := fmt.Sprintf("tcp://127.0.0.1:%d", ports[1])
	const logFile = "/var/log/fedmsg/fedmsg-relay.log"
	config := fmt.Sprintf(`relay_inbound: %s
relay_outbound: %s
log_file: %s
metrics_address: 127.0.0.1:%d
monitoring_endpoint: ipc:///run/fedmsg/monitoring-fedmsg-relay.socket
drain_timeout: 5s
`, inbound, outbound, logFile, ports[2])
	writeRelayConfig(t, h, config, fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]))

	// Type=notify: start returns once the relay said READY=1.
	if _, err := h.Exec("systemctl", "start", "fedmsg-relay"); err != nil {
		journal, _ := h.Exec("journalctl", "-u", "fedmsg-relay", "-o", "cat", "--no-pager")
		t.Fatalf("%v\nfirst lines of the service's journal:\n%s", err, head(journal, 40))
	}
	props := unitProps(t, h)
	for key, want := range map[string]string{
		"Type": "notify", "ActiveState": "active", "SubState": "running", "NRestarts": "0",
		"User": "fedmsg", "WatchdogUSec": "30s", "LimitNOFILE": "32768",
	} {
		if props[key] != want {
			t.Errorf("systemctl show: %s=%q, want %q", key, props[key], want)
		}
	}
	pid := props["MainPID"]
	checkRelayProcess(t, h, pid)
	for path, want := range map[string]string{
		"/run/fedmsg":     "775 fedmsg fedmsg directory",
		"/var/log/fedmsg": "755 fedmsg fedmsg directory",
		logFile:           "600 fedmsg fedmsg regular file",
		"/run/fedmsg/monitoring-fedmsg-relay.socket": "770 fedmsg fedmsg socket",
	} {
		if got := strings.TrimSpace(h.MustExec("stat", "-c", "%a %U %G %F", path)); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	roundtrip(t, inbound, outbound, "org.fedoraproject.prod.test.started")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[2]))
	if err != nil {
		t.Errorf("metrics: %v", err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s", resp.Status)
	}

	// The SOP's restart.
	h.MustExec("service", "fedmsg-relay", "restart")
	props = unitProps(t, h)
	if props["ActiveState"] != "active" || props["MainPID"] == pid || props["MainPID"] == "0" {
		t.Errorf("after service restart: ActiveState=%s MainPID=%s (was %s)", props["ActiveState"], props["MainPID"], pid)
	}
	pid = props["MainPID"]
	checkRelayProcess(t, h, pid)
	roundtrip(t, inbound, outbound, "org.fedoraproject.prod.test.restarted")

	// Reload (what logrotate's postrotate runs) after moving the log away.
	h.MustExec("mv", logFile, logFile+".1")
	h.MustExec("systemctl", "reload", "fedmsg-relay")
	testutil.WaitFor(t, 10*time.Second, "the relay to reopen "+logFile, func() bool {
		return strings.Contains(readOptional(h.Path(logFile)), "reloaded")
	})
	if strings.Contains(readOptional(h.Path(logFile+".1")), "reloaded") {
		t.Errorf("the reload was logged to the moved-away file")
	}
	if got := strings.TrimSpace(h.MustExec("stat", "-c", "%U", logFile)); got != "fedmsg" {
		t.Errorf("reopened log owned by %s, want fedmsg", got)
	}
	if props = unitProps(t, h); props["MainPID"] != pid || props["ActiveState"] != "active" {
		t.Errorf("after reload: MainPID=%s ActiveState=%s, want the same process (%s) active", props["MainPID"], props["ActiveState"], pid)
	}
	roundtrip(t, inbound, outbound, "org.fedoraproject.prod.test.reloaded")

	// Erase: the preun scriptlet stops and disables it.
	if out := h.MustExec("rpm", "-e", "--nodeps", "--force-debian", "fedmsg-relay", "fedmsg-relay-unit"); strings.Contains(out, "error") {
		t.Errorf("rpm -e:\n%s", out)
	}
	for _, unit := range []string{"fedmsg-relay.service", "fedmsg-relay.socket"} {
		if out, _ := h.Exec("systemctl", "is-active", unit); strings.TrimSpace(out) == "active" {
			t.Errorf("%s still active after rpm -e", unit)
		}
	}
	if out, err := h.Exec("pgrep", "-u", "fedmsg"); err == nil {
		t.Errorf("processes of user fedmsg left after rpm -e: %s", out)
	}
	for _, gone := range []string{"/usr/libexec/fedmsg-relay/fedmsg-relay", "/usr/lib/systemd/system/fedmsg-relay.service", "/usr/lib/systemd/system/fedmsg-relay.socket", "/etc/logrotate.d/00-fedmsg-relay"} {
		if _, err := os.Lstat(h.Path(gone)); !os.IsNotExist(err) {
			t.Errorf("%s still there after rpm -e (%v)", gone, err)
		}
	}
	// The edited config is kept, as %config(noreplace) files are.
	if _, err := os.Stat(h.Path("/etc/fedmsg-relay/relay.yaml.rpmsave")); err != nil {
		t.Errorf("edited relay.yaml not saved as .rpmsave: %v", err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	if err != nil {
		t.Errorf("inbound port still bound after rpm -e: %v", err)
	} else {
		l.Close()
	}
}

func head(s string, lines int) string {
	l := strings.SplitN(s, "\n", lines+1)
	if len(l) > lines {
		l = l[:lines]
	}
	return strings.Join(l, "\n")
}

// unitProps returns systemctl show's properties of the service.
func unitProps(t *testing.T, h *host.Host) map[string]string {
	t.Helper()
	out := h.MustExec("systemctl", "show", "fedmsg-relay", "-p",
		"Type,ActiveState,SubState,MainPID,NRestarts,User,WatchdogUSec,LimitNOFILE")
	props := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	return props
}

// checkRelayProcess checks the service's main process: the relay binary, as
// user fedmsg, with no capabilities, no_new_privs and a seccomp filter.
func checkRelayProcess(t *testing.T, h *host.Host, pid string) {
	t.Helper()
	if got := strings.TrimSpace(h.MustExec("ps", "-o", "user=,comm=", "-p", pid)); got != "fedmsg   fedmsg-relay" && strings.Join(strings.Fields(got), " ") != "fedmsg fedmsg-relay" {
		t.Errorf("main process %s: %q, want fedmsg-relay run by fedmsg", pid, got)
	}
	status := h.MustExec("cat", "/proc/"+pid+"/status")
	for _, want := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("main process %s: /proc status lacks %q", pid, want)
		}
	}
}

// roundtrip publishes a message to the relay's inbound port with a real
// libzmq peer until it comes back unchanged on the outbound port.
func roundtrip(t *testing.T, inbound, outbound, topic string) {
	t.Helper()
	out, err := exec.Command(python, "testdata/peer.py", "roundtrip", inbound, outbound, topic).CombinedOutput()
	if err != nil || !strings.Contains(string(out), topic) {
		t.Errorf("message %s through the installed relay: %v\n%s", topic, err, out)
	}
}
