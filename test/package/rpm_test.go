package packagetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// rpmFile is one entry of a package's file list.
type rpmFile struct {
	Mode, User, Group string
	Flags             string // rpm's fflags: c config, n noreplace, g ghost, d doc, l license
	LinkTo            string
}

func (f rpmFile) String() string {
	return fmt.Sprintf("%s %s:%s flags=%q link=%q", f.Mode, f.User, f.Group, f.Flags, f.LinkTo)
}

// rpmFiles lists a package's files with modes, owners and flags (rpm -qp).
func rpmFiles(t *testing.T, pkg string) map[string]rpmFile {
	t.Helper()
	out := run(t, "rpm", "-qp", "--qf",
		"[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILEFLAGS:fflags}\t%{FILELINKTOS}\n]", pkg)
	files := map[string]rpmFile{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			t.Fatalf("rpm -qp --qf: unexpected line %q", line)
		}
		files[f[0]] = rpmFile{Mode: f[1], User: f[2], Group: f[3], Flags: f[4], LinkTo: f[5]}
	}
	return files
}

// TestRPMFileList checks the three packages' files: paths, modes, owners, config,
// ghost, doc and licence flags, against what the issue asks for.
func TestRPMFileList(t *testing.T) {
	t.Parallel()
	r := buildRPMs(t)
	tests := []struct {
		pkg  string
		want map[string]rpmFile
		// generated entries checked by kind rather than listed
		extra func(path string, f rpmFile) error
	}{
		{
			pkg: r.Main,
			want: map[string]rpmFile{
				// Off /usr/bin, which python3-fedmsg owns (fedmsg-relay.spec).
				"/usr/libexec/fedmsg-relay":                                           {"drwxr-xr-x", "root", "root", "", ""},
				"/usr/libexec/fedmsg-relay/fedmsg-relay":                              {"-rwxr-xr-x", "root", "root", "", ""},
				"/usr/libexec/fedmsg-relay/fedmsg-signing-relay":                      {"lrwxrwxrwx", "root", "root", "", "fedmsg-relay"},
				"/usr/libexec/fedmsg-relay/fedmsg-logger":                             {"-rwxr-xr-x", "root", "root", "", ""},
				"/usr/libexec/fedmsg-relay/fedmsg-tail":                               {"-rwxr-xr-x", "root", "root", "", ""},
				"/usr/share/man/man8/fedmsg-relay.8.gz":                               {"-rw-r--r--", "root", "root", "d", ""},
				"/usr/share/man/man5/relay.yaml.5.gz":                                 {"-rw-r--r--", "root", "root", "d", ""},
				"/usr/lib/systemd/system/fedmsg-relay.service.d":                      {"drwxr-xr-x", "root", "root", "", ""},
				"/usr/lib/systemd/system/fedmsg-relay.service.d/50-fedmsg-relay.conf": {"-rw-r--r--", "root", "root", "", ""},
				"/usr/lib/systemd/system/fedmsg-relay.socket":                         {"-rw-r--r--", "root", "root", "", ""},
				"/usr/lib/sysusers.d/fedmsg-relay.conf":                               {"-rw-r--r--", "root", "root", "", ""},
				"/usr/lib/tmpfiles.d/fedmsg-relay.conf":                               {"-rw-r--r--", "root", "root", "", ""},
				"/etc/fedmsg-relay":                                                   {"drwxr-xr-x", "root", "root", "", ""},
				"/etc/fedmsg-relay/relay.yaml":                                        {"-rw-r--r--", "root", "root", "cn", ""},
				"/etc/logrotate.d/00-fedmsg-relay":                                    {"-rw-r--r--", "root", "root", "cn", ""},
				"/var/log/fedmsg":                                                     {"drwxr-xr-x", "fedmsg", "fedmsg", "", ""},
				"/usr/share/licenses/fedmsg-relay/LICENSE":                            {"-rw-r--r--", "root", "root", "l", ""},
			},
			extra: func(p string, f rpmFile) error {
				if ok, err := builtOrLicence("fedmsg-relay", p, f); ok {
					return err
				}
				switch {
				case regexp.MustCompile(`^/usr/share/doc/fedmsg-relay[^/]*(/README\.md|/sop\.md)?$`).MatchString(p):
					if strings.HasSuffix(p, ".md") && f.Flags != "d" {
						return fmt.Errorf("not marked %%doc")
					}
					return nil
				}
				return fmt.Errorf("unexpected file")
			},
		},
		{
			pkg:   r.Unit,
			want:  map[string]rpmFile{"/usr/lib/systemd/system/fedmsg-relay.service": {"-rw-r--r--", "root", "root", "", ""}},
			extra: func(string, rpmFile) error { return fmt.Errorf("unexpected file") },
		},
		{
			pkg: r.Clients,
			want: map[string]rpmFile{
				"/usr/bin/fedmsg-logger":                           {"-rwxr-xr-x", "root", "root", "", ""},
				"/usr/bin/fedmsg-tail":                             {"-rwxr-xr-x", "root", "root", "", ""},
				"/usr/share/man/man1/fedmsg-logger.1.gz":           {"-rw-r--r--", "root", "root", "d", ""},
				"/usr/share/man/man1/fedmsg-tail.1.gz":             {"-rw-r--r--", "root", "root", "d", ""},
				"/usr/share/licenses/fedmsg-relay-clients/LICENSE": {"-rw-r--r--", "root", "root", "l", ""},
			},
			extra: func(p string, f rpmFile) error {
				if ok, err := builtOrLicence("fedmsg-relay-clients", p, f); ok {
					return err
				}
				return fmt.Errorf("unexpected file")
			},
		},
		{
			pkg: r.SELinux,
			want: map[string]rpmFile{
				"/usr/share/selinux/packages/targeted/fedmsg_relay.pp.bz2":        {"-rw-r--r--", "root", "root", "", ""},
				"/usr/share/selinux/packages/targeted/fedmsg_relay_ports.cil.bz2": {"-rw-r--r--", "root", "root", "", ""},
				"/usr/share/selinux/devel/include/distributed/fedmsg_relay.if":    {"-rw-r--r--", "root", "root", "", ""},
				"/var/lib/selinux/targeted/active/modules/200/fedmsg_relay":       {"drwx------", "root", "root", "g", ""},
				"/var/lib/selinux/targeted/active/modules/200/fedmsg_relay_ports": {"drwx------", "root", "root", "g", ""},
			},
			extra: func(string, rpmFile) error { return fmt.Errorf("unexpected file") },
		},
	}
	for _, tt := range tests {
		got := rpmFiles(t, tt.pkg)
		for path, want := range tt.want {
			if g, ok := got[path]; !ok {
				t.Errorf("%s: missing %s", filepath.Base(tt.pkg), path)
			} else if g != want {
				t.Errorf("%s: %s is %v, want %v", filepath.Base(tt.pkg), path, g, want)
			}
		}
		licences := 0
		for path, f := range got {
			if _, ok := tt.want[path]; ok {
				continue
			}
			if strings.Contains(f.Flags, "l") {
				licences++
			}
			if err := tt.extra(path, f); err != nil {
				t.Errorf("%s: %s (%v): %v", filepath.Base(tt.pkg), path, f, err)
			}
		}
		if (tt.pkg == r.Main || tt.pkg == r.Clients) && licences == 0 {
			t.Errorf("%s: no licence files of the vendored modules", filepath.Base(tt.pkg))
		}
	}
}

// builtOrLicence reports whether p is a build-id link rpm adds for a binary
// or in the package's licence directory (vendored modules' licences under
// vendor/), and for the latter whether it is marked %license.
func builtOrLicence(pkg, p string, f rpmFile) (bool, error) {
	dir := "/usr/share/licenses/" + pkg
	switch {
	case strings.HasPrefix(p, "/usr/lib/.build-id"):
		return true, nil
	case p == dir || strings.HasPrefix(p, dir+"/vendor"):
		if f.Mode[0] == '-' && !strings.Contains(f.Flags, "l") {
			return true, fmt.Errorf("not marked %%license")
		}
		return true, nil
	}
	return false, nil
}

// scriptlets splits `rpm -qp --scripts` output into scriptlet name -> body.
func scriptlets(t *testing.T, pkg string) map[string]string {
	t.Helper()
	out := run(t, "rpm", "-qp", "--scripts", pkg)
	header := regexp.MustCompile(`(?m)^(\w+) scriptlet \(using ([^)]+)\):$`)
	got := map[string]string{}
	idx := header.FindAllStringSubmatchIndex(out, -1)
	for i, m := range idx {
		end := len(out)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		name := out[m[2]:m[3]]
		if shell := out[m[4]:m[5]]; shell != "/bin/sh" {
			t.Errorf("%s: %s scriptlet runs with %s, want /bin/sh", filepath.Base(pkg), name, shell)
		}
		got[name] = out[m[1]:end]
	}
	return got
}

// TestRPMScriptlets checks the scriptlets the macros expand to: user from the
// sysusers file, tmpfiles, systemd preset/disable/try-restart on the right
// $1, SELinux module install/uninstall (erase only) and relabel.
func TestRPMScriptlets(t *testing.T) {
	t.Parallel()
	r := buildRPMs(t)
	tests := []struct {
		pkg  string
		want map[string][]string // scriptlet -> substrings, in order
	}{
		{r.Main, map[string][]string{
			"preinstall":   {"systemd-sysusers", "u\tfedmsg\t-\t\"fedmsg relay\""},
			"postinstall":  {"if [ $1 -eq 1 ]", "systemctl --no-reload preset fedmsg-relay.socket fedmsg-relay.service", "systemd-tmpfiles --create /usr/lib/tmpfiles.d/fedmsg-relay.conf"},
			"preuninstall": {"if [ $1 -eq 0 ]", "systemctl --no-reload disable --now fedmsg-relay.service fedmsg-relay.socket"},
			// An upgrade restarts the relay, never the socket that holds its ports.
			"postuninstall": {"systemctl daemon-reload", "if [ $1 -ge 1 ]", "systemctl try-restart fedmsg-relay.service >"},
		}},
		{r.SELinux, map[string][]string{
			"preinstall": {"file_contexts.pre"},
			"postinstall": {"semodule -n -s ${_policytype} -X 200 -i " +
				"/usr/share/selinux/packages/targeted/fedmsg_relay.pp.bz2 " +
				"/usr/share/selinux/packages/targeted/fedmsg_relay_ports.cil.bz2", "load_policy"},
			"postuninstall": {"if [ $1 -eq 0 ]", "-r fedmsg_relay fedmsg_relay_ports"},
			"posttrans":     {"fixfiles -C", "restore"},
		}},
	}
	for _, tt := range tests {
		got := scriptlets(t, tt.pkg)
		var names []string
		for name := range got {
			names = append(names, name)
		}
		sort.Strings(names)
		if len(got) != len(tt.want) {
			t.Errorf("%s: scriptlets %v, want exactly %d", filepath.Base(tt.pkg), names, len(tt.want))
		}
		for name, subs := range tt.want {
			body, ok := got[name]
			if !ok {
				t.Errorf("%s: no %s scriptlet", filepath.Base(tt.pkg), name)
				continue
			}
			rest := body
			for _, sub := range subs {
				i := strings.Index(rest, sub)
				if i < 0 {
					t.Errorf("%s: %s scriptlet lacks %q (in order):\n%s", filepath.Base(tt.pkg), name, sub, body)
					break
				}
				rest = rest[i+len(sub):]
			}
		}
		for name, body := range got {
			// Style: sysusers, not useradd; no policy changes by hand; the socket
			// is never restarted by a package transaction.
			for _, banned := range []string{"useradd", "groupadd", "semanage", "setsebool", "copytruncate", "restart fedmsg-relay.socket"} {
				if strings.Contains(body, banned) {
					t.Errorf("%s: %s scriptlet uses %s", filepath.Base(tt.pkg), name, banned)
				}
			}
		}
	}
}

// TestRPMDependencies checks the relations that matter: libzmq, the SELinux
// subpackage pulled in with the targeted policy, logrotate recommended, no
// conflict between the daemon and python3-fedmsg (they run side by side),
// and the clients' conflict with the Python commands of the same names.
func TestRPMDependencies(t *testing.T) {
	t.Parallel()
	r := buildRPMs(t)
	evr := r.EVR()
	tests := []struct {
		pkg, query string
		want       []string
	}{
		{r.Main, "--requires", []string{"libzmq.so.5()(64bit)", "(fedmsg-relay-selinux = " + evr + " if selinux-policy-targeted)", "systemd",
			"(fedmsg-relay-unit = " + evr + " or python3-fedmsg >= 1.0)"}},
		{r.Unit, "--conflicts", []string{"python3-fedmsg >= 1.0"}},
		{r.Main, "--conflicts", nil},
		{r.Main, "--recommends", []string{"logrotate"}},
		{r.Main, "--obsoletes", nil},
		{r.Clients, "--conflicts", []string{"python3-fedmsg", "python2-fedmsg"}},
		{r.SELinux, "--requires", []string{"fedmsg-relay = " + evr, "selinux-policy-targeted"}},
	}
	for _, tt := range tests {
		have := map[string]bool{}
		for _, line := range strings.Split(run(t, "rpm", "-qp", tt.query, tt.pkg), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				have[line] = true
			}
		}
		for _, w := range tt.want {
			if !have[w] {
				t.Errorf("%s %s: missing %q; have %v", filepath.Base(tt.pkg), tt.query, w, have)
			}
		}
		if tt.want == nil && len(have) > 0 {
			t.Errorf("%s %s: want none, have %v", filepath.Base(tt.pkg), tt.query, have)
		}
	}
}

// TestRPMVersionEmbedded runs the packaged binary: --version must report the
// spec's version (the spec's %check does the same at build time).
func TestRPMVersionEmbedded(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "rpm2cpio", "cpio")
	r := buildRPMs(t)
	root := extractRPM(t, r.Main)
	out := run(t, filepath.Join(root, "usr/libexec/fedmsg-relay/fedmsg-relay"), "--version")
	if want := "fedmsg-relay " + r.Version + "\n"; out != want {
		t.Errorf("packaged fedmsg-relay --version = %q, want %q", out, want)
	}
}

// extractRPM unpacks a package's payload into a new directory.
func extractRPM(t *testing.T, pkg string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `rpm2cpio "$1" | cpio -idm --quiet`, "sh", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v\n%s", pkg, err, out)
	}
	return dir
}

// TestRPMLint runs rpmlint on the spec, the SRPM and both RPMs with Fedora's
// profile (rpm/debian-test/rpmlint-fedora.toml) and the package's justified
// filters (rpm/fedmsg-relay.rpmlintrc): no error and no warning may remain,
// and no filter may be unused.
func TestRPMLint(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "rpmlint")
	r := buildRPMs(t)
	// rpmlint parses the spec itself; %sysusers_create_compat reads its
	// source from beside the spec, as in a Fedora dist-git checkout.
	specDir := t.TempDir()
	for _, f := range []string{"fedmsg-relay.spec", "rpm/fedmsg-relay.sysusers"} {
		data, err := os.ReadFile(repoPath(f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(specDir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("rpmlint", "-c", repoPath("rpm/debian-test/rpmlint-fedora.toml"),
		"-r", repoPath("rpm/fedmsg-relay.rpmlintrc"),
		filepath.Join(specDir, "fedmsg-relay.spec"), r.SRPM, r.Main, r.Unit, r.Clients, r.SELinux)
	cmd.Env = append(os.Environ(), "HOME="+rpmMacrosHome(t, specDir))
	out, err := cmd.CombinedOutput()
	summary := regexp.MustCompile(`(\d+) errors, (\d+) warnings`).FindStringSubmatch(string(out))
	if err != nil || summary == nil || summary[1] != "0" || summary[2] != "0" {
		t.Errorf("rpmlint: %v, want 0 errors and 0 warnings (filter justified ones in rpm/fedmsg-relay.rpmlintrc):\n%s", err, out)
	}
	if strings.Contains(string(out), "specfile-error") || strings.Contains(string(out), "unused-rpmlintrc-filter") {
		t.Errorf("rpmlint:\n%s", out)
	}
}

// TestSpecAccountsForModuleLicences checks that the spec's licence comment
// names every module go.mod requires, so a new dependency cannot be vendored
// into the RPM without its licence being added to License:.
func TestSpecAccountsForModuleLicences(t *testing.T) {
	t.Parallel()
	spec := readFile(t, repoPath("fedmsg-relay.spec"))
	licenceBlock := spec[:strings.Index(spec, "\nLicense:")]
	modules := regexp.MustCompile(`(?m)^\s+([a-z0-9.-]+\.[a-z]+/\S+) v\S+`).FindAllStringSubmatch(readFile(t, repoPath("go.mod")), -1)
	if len(modules) == 0 {
		t.Fatal("no requirements parsed from go.mod")
	}
	for _, m := range modules {
		if !strings.Contains(licenceBlock, m[1]) {
			t.Errorf("go.mod requires %s, not in the spec's licence comment above License:", m[1])
		}
	}
}

// TestSpecGoFloor checks the spec's golang BuildRequires is go.mod's go
// line: one minimum Go version, not two that drift apart.
func TestSpecGoFloor(t *testing.T) {
	t.Parallel()
	mod := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readFile(t, repoPath("go.mod")))
	spec := regexp.MustCompile(`(?m)^BuildRequires:\s+golang >= (\S+)$`).FindAllStringSubmatch(readFile(t, repoPath("fedmsg-relay.spec")), -1)
	if mod == nil || len(spec) != 1 {
		t.Fatalf("go.mod go line %v, spec golang BuildRequires %v: want one of each", mod, spec)
	}
	if spec[0][1] != mod[1] {
		t.Errorf("spec BuildRequires golang >= %s, go.mod says go %s", spec[0][1], mod[1])
	}
}
