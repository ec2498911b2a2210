package packagetest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

const (
	unitName   = "fedmsg-relay.service"
	socketName = "fedmsg-relay.socket" // the service wants it (socket activation)
)

// unitVerifyRoot builds a root for `systemd-analyze verify --root`: the host's
// units (for the targets it references), the unit under test and its socket
// unit, and executables
// at the paths its Exec lines use.
func unitVerifyRoot(t *testing.T, unit []byte) string {
	t.Helper()
	root := t.TempDir()
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-a", "/lib/systemd/system/.", unitDir)
	if err := os.WriteFile(filepath.Join(unitDir, unitName), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", repoPath("systemd/"+socketName), unitDir)
	for dst, src := range map[string]string{"usr/libexec/fedmsg-relay/fedmsg-relay": command(t, "fedmsg-relay"), "bin/kill": "/bin/kill"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, "cp", src, filepath.Join(root, dst))
	}
	return root
}

// TestUnitVerify runs systemd-analyze verify on the unit; it warns about
// unknown or misspelt keys only on stderr, so any output fails the test. A
// deliberately misspelt copy proves such output is caught. (--man=no: the
// socket unit names the man pages, which are the package's, not this root's.)
func TestUnitVerify(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "systemd-analyze")
	unit, err := os.ReadFile(repoPath("systemd/" + unitName))
	if err != nil {
		t.Fatal(err)
	}
	verify := func(unit []byte) (string, error) {
		cmd := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+unitVerifyRoot(t, unit), unitName, socketName)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := verify(unit); err != nil || out != "" {
		t.Errorf("systemd-analyze verify %s: %v, output:\n%s", unitName, err, out)
	}
	broken := bytes.Replace(unit, []byte("\nProtectHome="), []byte("\nProtectHomeDir="), 1)
	if out, _ := verify(broken); !strings.Contains(out, "ProtectHomeDir") {
		t.Errorf("systemd-analyze verify said nothing about an unknown key: %q", out)
	}
}

// TestUnitSecurity requires an exposure of at most 2.0 from
// systemd-analyze security --offline.
func TestUnitSecurity(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "systemd-analyze")
	const maxExposure = 2.0
	analyze := func(threshold string) ([]byte, error) {
		return exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold="+threshold,
			repoPath("systemd/"+unitName)).CombinedOutput()
	}
	out, err := analyze("2.0")
	if bytes.Contains(out, []byte("Failed to parse threshold")) {
		// systemd < 253 takes the threshold in tenths.
		out, err = analyze(strconv.Itoa(int(maxExposure * 10)))
	}
	if err != nil {
		t.Errorf("systemd-analyze security --threshold (%.1f): %v\n%s", maxExposure, err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(unitName) + `: (\d+\.\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > maxExposure {
		t.Errorf("exposure %.1f, want <= %.1f:\n%s", level, maxExposure, out)
	}
	t.Logf("systemd-analyze security: overall exposure %s", m[1])
}

// unitSettings parses a unit file into key -> values (in order); an empty
// assignment resets the list.
func unitSettings(unit string) map[string][]string {
	settings := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		switch {
		case !ok:
		case v == "" || (len(settings[k]) == 1 && settings[k][0] == ""):
			settings[k] = []string{v} // an empty value resets a list, as in systemd
		default:
			settings[k] = append(settings[k], v)
		}
	}
	return settings
}

// TestUnitSettings checks the directives the issue asks for, and that stop
// and file limits agree with the packaged relay.yaml and haproxy's maxconn.
func TestUnitSettings(t *testing.T) {
	t.Parallel()
	s := unitSettings(readFile(t, repoPath("systemd/"+unitName)))
	for key, want := range map[string]string{
		"Type": "notify", "User": "fedmsg", "Group": "fedmsg", "Restart": "on-failure",
		"ExecReload": "/bin/kill -HUP $MAINPID", "ExecStart": "/usr/libexec/fedmsg-relay/fedmsg-relay --config /etc/fedmsg-relay/relay.yaml",
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK", "UMask": "0077",
		"RuntimeDirectory": "fedmsg", "RuntimeDirectoryMode": "0775", "LogsDirectory": "fedmsg",
		"WantedBy": "multi-user.target",
	} {
		if got := s[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if !strings.HasPrefix(strings.Join(s["SystemCallFilter"], " "), "@system-service") {
		t.Errorf("SystemCallFilter=%q, want @system-service first", s["SystemCallFilter"])
	}
	// Socket activation: started with the relay and ordered before it, but
	// only wanted, so a masked socket leaves a relay that binds itself.
	for _, key := range []string{"Wants", "After"} {
		if !slices.Contains(s[key], socketName) {
			t.Errorf("%s=%q, want %s", key, s[key], socketName)
		}
	}
	if slices.Contains(s["Requires"], socketName) || slices.Contains(s["BindsTo"], socketName) {
		t.Errorf("the relay requires %s: masking it would stop the relay from starting", socketName)
	}
	if len(s["WatchdogSec"]) != 1 {
		t.Errorf("WatchdogSec=%q, want one", s["WatchdogSec"])
	}
	const haproxyMaxconn = 16384
	if n, _ := strconv.Atoi(strings.Join(s["LimitNOFILE"], "")); n < haproxyMaxconn+1024 {
		t.Errorf("LimitNOFILE=%q, want at least haproxy's %d connections plus a margin", s["LimitNOFILE"], haproxyMaxconn)
	}
	drainRaw := regexp.MustCompile(`(?m)^#?drain_timeout: (\S+)`).FindStringSubmatch(readFile(t, repoPath("rpm/relay.yaml")))
	if drainRaw == nil {
		t.Fatal("no drain_timeout in rpm/relay.yaml")
	}
	drain, err1 := time.ParseDuration(drainRaw[1])
	stop, err2 := time.ParseDuration(strings.Join(s["TimeoutStopSec"], ""))
	if err1 != nil || err2 != nil || stop < drain+5*time.Second {
		t.Errorf("TimeoutStopSec=%q, want drain_timeout (%s) plus at least 5s (%v %v)", s["TimeoutStopSec"], drainRaw[1], err1, err2)
	}
}
