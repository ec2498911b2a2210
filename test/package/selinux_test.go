package packagetest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

const develMakefile = "/usr/share/selinux/devel/Makefile"

// TestSELinuxModule compiles the module with the SELinux devel Makefile
// (Debian's refpolicy headers, plus the test-only shim for Fedora's interface
// names) and links it, with its port labels, into a scratch copy of the
// installed policy store with semodule: the host's policy is not touched.
// A second module uses the monitoring interface for collectd_t and nrpe_t,
// as a monitoring host's local module would, and must link against the
// real collectd and nagios modules.
func TestSELinuxModule(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "make", "checkmodule", "semodule_package", "semodule", "m4")
	if _, err := os.Stat(develMakefile); err != nil {
		skipOrFail(t, "selinux-policy-dev: %v", err)
	}
	dir := t.TempDir()
	for _, f := range []string{
		"selinux/fedmsg_relay.te", "selinux/fedmsg_relay.if", "selinux/fedmsg_relay.fc", "selinux/fedmsg_relay_ports.cil",
		"rpm/debian-test/fedora_names.te", "rpm/debian-test/fedora_names.if",
		"test/package/testdata/fedmsg_relay_monitor.te",
	} {
		copyFile(t, repoPath(f), filepath.Join(dir, filepath.Base(f)))
	}
	cmd := exec.Command("make", "-f", develMakefile, "fedmsg_relay.pp", "fedmsg_relay_monitor.pp")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make -f %s fedmsg_relay.pp fedmsg_relay_monitor.pp: %v\n%s", develMakefile, err, out)
	}

	// Scratch store: the installed policy's store and config under a new root.
	policyType := selinuxType(t)
	root := t.TempDir()
	for _, p := range []string{"/etc/selinux", "/var/lib/selinux/" + policyType} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, "cp", "-a", p, filepath.Join(root, p))
	}
	semodule := func(args ...string) string {
		return run(t, "semodule", append([]string{"-p", root, "-s", policyType}, args...)...)
	}
	semodule("-n", "-i", filepath.Join(dir, "fedmsg_relay.pp"), filepath.Join(dir, "fedmsg_relay_ports.cil"),
		filepath.Join(dir, "fedmsg_relay_monitor.pp"))
	modules := semodule("-l")
	for _, m := range []string{"fedmsg_relay", "fedmsg_relay_ports", "fedmsg_relay_monitor"} {
		if !regexp.MustCompile(`(?m)^` + m + `(\s|$)`).MatchString(modules) {
			t.Errorf("module %s not in the scratch store after semodule -i:\n%s", m, modules)
		}
	}
}

// TestSELinuxShimOnlyRenames checks the Debian shim defines only interfaces
// Debian's headers lack (it must not shadow real ones) and that the module
// uses each of them.
func TestSELinuxShimOnlyRenames(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(develMakefile); err != nil {
		skipOrFail(t, "selinux-policy-dev: %v", err)
	}
	defined := regexp.MustCompile("(?m)^(?:interface|template)\\(`(\\w+)'")
	shim := defined.FindAllStringSubmatch(readFile(t, repoPath("rpm/debian-test/fedora_names.if")), -1)
	if len(shim) == 0 {
		t.Fatal("no interfaces in rpm/debian-test/fedora_names.if")
	}
	debian := map[string]bool{}
	headers, _ := filepath.Glob(filepath.Join(filepath.Dir(develMakefile), "include/*/*.if"))
	for _, h := range headers {
		for _, m := range defined.FindAllStringSubmatch(readFile(t, h), -1) {
			debian[m[1]] = true
		}
	}
	if len(debian) < 1000 {
		t.Fatalf("only %d interfaces found in %d Debian headers", len(debian), len(headers))
	}
	te := readFile(t, repoPath("selinux/fedmsg_relay.te")) + readFile(t, repoPath("selinux/fedmsg_relay.if"))
	for _, m := range shim {
		if debian[m[1]] {
			t.Errorf("shim defines %s, which Debian's policy has: it would shadow it", m[1])
		}
		if !strings.Contains(te, m[1]+"(") {
			t.Errorf("shim defines %s, which the module does not use", m[1])
		}
	}
}

// TestSELinuxPortsMatchRelayYAML checks that the module labels exactly the
// ports of the production keys shown (commented) in the packaged relay.yaml:
// the ports the relay binds there, and no other (9940 is fedmsg-gateway's).
func TestSELinuxPortsMatchRelayYAML(t *testing.T) {
	t.Parallel()
	ports := func(re string, text string) []string {
		var out []string
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
		sort.Strings(out)
		return out
	}
	labelled := ports(`\(portcon tcp (\d+) `, readFile(t, repoPath("selinux/fedmsg_relay_ports.cil")))
	// Production lines are the commented ones: "#  - tcp://*:9941", "#metrics_address: 127.0.0.1:9943".
	production := ports(`(?m)^#.*(?:tcp://\*|127\.0\.0\.1):(\d+)`, readFile(t, repoPath("rpm/relay.yaml")))
	if len(labelled) == 0 || strings.Join(labelled, " ") != strings.Join(production, " ") {
		t.Errorf("fedmsg_relay_ports.cil labels %v, relay.yaml's production keys bind %v", labelled, production)
	}
}

// fcEntry is one line of a .fc file.
type fcEntry struct {
	re   *regexp.Regexp
	kind string // "--" file, "-d" directory, "" any
	typ  string
	src  string
}

func parseFC(t *testing.T, path string) []fcEntry {
	t.Helper()
	var entries []fcEntry
	ctx := regexp.MustCompile(`^gen_context\(system_u:object_r:(\w+),s0\)$`)
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		e := fcEntry{src: sc.Text()}
		switch len(f) {
		case 2:
		case 3:
			e.kind = f[1]
		default:
			t.Fatalf("%s: unexpected line %q", path, sc.Text())
		}
		m := ctx.FindStringSubmatch(f[len(f)-1])
		if m == nil {
			t.Fatalf("%s: unexpected context in %q", path, sc.Text())
		}
		e.typ = m[1]
		e.re = regexp.MustCompile("^" + f[0] + "$")
		if strings.HasPrefix(f[0], "/var/run") {
			t.Errorf("%s: %q: use /run, not /var/run", path, sc.Text())
		}
		entries = append(entries, e)
	}
	return entries
}

// TestSELinuxFileContextsMatchPackage parses the .fc file and the spec's
// %files (rpmspec -P with the test macros), plus the paths the unit,
// relay.yaml and tmpfiles.d use at run time, and checks that every .fc entry
// labels something the package ships or uses and every such path gets the
// intended type.
func TestSELinuxFileContextsMatchPackage(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "rpmspec")
	fc := parseFC(t, repoPath("selinux/fedmsg_relay.fc"))

	cmd := exec.Command("rpmspec", "-P", repoPath("fedmsg-relay.spec"))
	cmd.Env = append(os.Environ(), "HOME="+rpmMacrosHome(t, repoPath("rpm")))
	expanded, err := cmd.Output()
	if err != nil {
		t.Fatalf("rpmspec -P: %v", err)
	}
	packaged := specFiles(string(expanded))
	if len(packaged) < 10 {
		t.Fatalf("only %d paths parsed from the spec's %%files: %v", len(packaged), packaged)
	}

	// Paths used at run time, read from the files that define them.
	unit := readFile(t, repoPath("systemd/fedmsg-relay.service"))
	execStart := regexp.MustCompile(`(?m)^ExecStart=(\S+) --config (\S+)`).FindStringSubmatch(unit)
	if execStart == nil {
		t.Fatal("no ExecStart=BINARY --config FILE in the unit")
	}
	relayYAML := readFile(t, repoPath("rpm/relay.yaml"))
	// The packaged file has them as comments: the production values.
	logFile := regexp.MustCompile(`(?m)^#?log_file: (\S+)`).FindStringSubmatch(relayYAML)
	monitor := regexp.MustCompile(`(?m)^#?monitoring_endpoint: ipc://(\S+)`).FindStringSubmatch(relayYAML)
	runDir := regexp.MustCompile(`(?m)^d (\S+) `).FindStringSubmatch(readFile(t, repoPath("rpm/fedmsg-relay.tmpfiles")))
	stateDir := regexp.MustCompile(`(?m)^StateDirectory=(\S+)`).FindStringSubmatch(unit)
	if logFile == nil || monitor == nil || runDir == nil || stateDir == nil {
		t.Fatal("log_file, monitoring_endpoint (relay.yaml), the tmpfiles.d directory or the unit's StateDirectory not found")
	}

	want := []struct {
		path, typ string
		shipped   bool // must be in the spec's %files
	}{
		{execStart[1], "fedmsg_relay_exec_t", true},
		{"/usr/lib/systemd/system/fedmsg-relay.service", "fedmsg_relay_unit_file_t", true},
		{filepath.Dir(execStart[2]), "fedmsg_relay_conf_t", true},
		{execStart[2], "fedmsg_relay_conf_t", true},
		{filepath.Dir(logFile[1]), "fedmsg_relay_log_t", true},
		{logFile[1], "fedmsg_relay_log_t", false},
		{logFile[1] + ".1", "fedmsg_relay_log_t", false}, // rotated
		{runDir[1], "fedmsg_relay_var_run_t", false},
		{monitor[1], "fedmsg_relay_var_run_t", false},
		{"/var/lib/" + stateDir[1], "fedmsg_relay_var_lib_t", false},
		{"/var/lib/" + stateDir[1] + "/amqp-spool/segment", "fedmsg_relay_var_lib_t", false},
	}
	label := func(path string) (string, bool) {
		for _, e := range fc {
			if e.re.MatchString(path) {
				return e.typ, true // first match, as in a module's own .fc
			}
		}
		return "", false
	}
	for _, w := range want {
		if w.shipped && !packaged[w.path] {
			t.Errorf("%s: not in the spec's %%files", w.path)
		}
		if typ, ok := label(w.path); !ok || typ != w.typ {
			t.Errorf("%s: labelled %q by selinux/fedmsg_relay.fc, want %s", w.path, typ, w.typ)
		}
	}
	// Every .fc entry must label something the package ships or uses.
	used := map[string]bool{}
	for p := range packaged {
		used[p] = true
	}
	for _, w := range want {
		used[w.path] = true
	}
	for _, e := range fc {
		matched := false
		for p := range used {
			matched = matched || e.re.MatchString(p)
		}
		if !matched {
			t.Errorf("selinux/fedmsg_relay.fc: %q labels nothing the package ships or uses", e.src)
		}
	}
}

// specFiles returns the absolute paths listed in an expanded spec's %files
// sections (attributes and directives stripped).
func specFiles(spec string) map[string]bool {
	paths := map[string]bool{}
	directive := regexp.MustCompile(`%(?:attr|verify|config|defattr)\([^)]*\)|%(?:dir|ghost|config|doc|license)\b`)
	inFiles := false
	for _, line := range strings.Split(spec, "\n") {
		if strings.HasPrefix(line, "%") && !directive.MatchString(strings.Fields(line + " x")[0]) {
			inFiles = strings.HasPrefix(line, "%files")
			continue
		}
		if !inFiles {
			continue
		}
		for _, f := range strings.Fields(directive.ReplaceAllString(line, " ")) {
			if strings.HasPrefix(f, "/") {
				paths[f] = true
			}
		}
	}
	return paths
}

// selinuxType is the installed policy's store name (SELINUXTYPE).
func selinuxType(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^SELINUXTYPE=(\S+)`).FindStringSubmatch(readFile(t, "/etc/selinux/config"))
	if m == nil {
		t.Fatal("no SELINUXTYPE in /etc/selinux/config")
	}
	return m[1]
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// skipOrFail skips, or fails when CI=true (CI must have every tool).
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
