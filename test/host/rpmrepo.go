package host

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoDir is where UseRepo puts a repository inside a host.
const repoDir = "/srv/fedmsg-test-repo"

// LocalRepo makes a dnf repository (createrepo_c) of rpms, plus a test-only RPM
// providing what they require from the Debian host, and returns its directory.
func LocalRepo(t testing.TB, rpms []string) string {
	t.Helper()
	NeedTools(t, "rpm", "rpmbuild", "createrepo_c")
	dir := t.TempDir()
	for _, rpm := range rpms {
		data, err := os.ReadFile(rpm)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(rpm)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hostProvidesRPM(t, rpms, dir)
	if out, err := exec.Command("createrepo_c", "--quiet", dir).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	return dir
}

// UseRepo copies a LocalRepo into the host and makes it a package source of
// dnf, as a Fedora host has its own (gpgcheck off: the test built it).
func (h *Host) UseRepo(repo string) error {
	files, _ := filepath.Glob(filepath.Join(repo, "*.rpm"))
	meta, _ := filepath.Glob(filepath.Join(repo, "repodata", "*"))
	if len(files) == 0 || len(meta) == 0 {
		return fmt.Errorf("use repository %s in %s: no RPMs or no repodata", repo, h.Name)
	}
	for _, f := range files {
		if err := h.Copy(f, repoDir+"/"+filepath.Base(f)); err != nil {
			return err
		}
	}
	for _, f := range meta {
		if err := h.Copy(f, repoDir+"/repodata/"+filepath.Base(f)); err != nil {
			return err
		}
	}
	return h.WriteFile("/etc/yum.repos.d/fedmsg-test.repo", []byte(
		"[fedmsg-test]\nname=fedmsg-relay under test\nbaseurl=file://"+repoDir+"\ngpgcheck=0\n"), 0o644)
}

// rpmQuery runs rpm -qp with a query format over packages, one result per line.
func rpmQuery(t testing.TB, what string, rpms []string) []string {
	t.Helper()
	out, err := exec.Command("rpm", append([]string{"-qp", what}, rpms...)...).Output()
	if err != nil {
		t.Fatalf("rpm -qp %s: %v", what, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// hostProvidesRPM builds a test-only noarch RPM declaring every dependency of rpms that
// they do not provide themselves. On the Debian test hosts those are satisfied by dpkg
// (libzmq5, glibc, systemd, /bin/sh, ...), which the rpm database cannot see; the relay's
// own package is installed unchanged, through dnf, as in production.
func hostProvidesRPM(t testing.TB, rpms []string, outDir string) string {
	t.Helper()
	// Only what the Debian hosts install: the SELinux subpackage's requirements
	// (selinux-policy-*) must stay unmet, or its rich dependency would pull it in.
	var installed []string
	for _, rpm := range rpms {
		if name := rpmQuery(t, "--queryformat=%{NAME}", []string{rpm})[0]; !strings.HasSuffix(name, "-selinux") &&
			!strings.Contains(name, "-debug") {
			installed = append(installed, rpm)
		}
	}
	rpms = installed
	provided := map[string]bool{}
	for _, p := range rpmQuery(t, "--provides", rpms) {
		provided[strings.Fields(p)[0]] = true
	}
	for _, f := range rpmQuery(t, "--list", rpms) {
		provided[f] = true
	}
	var provides []string
	seen := map[string]bool{}
	for _, req := range rpmQuery(t, "--requires", rpms) {
		fields := strings.Fields(req)
		name := fields[0]
		// Rich dependencies ("(a if b)") are conditional; their conditions are not met here.
		if strings.HasPrefix(name, "rpmlib(") || strings.HasPrefix(name, "(") || provided[name] || seen[name] {
			continue
		}
		seen[name] = true
		if len(fields) == 3 && strings.Contains(fields[1], "=") { // name >= version
			provides = append(provides, name+" = "+fields[2])
		} else {
			provides = append(provides, name)
		}
	}
	if len(provides) == 0 {
		t.Fatal("the RPMs require nothing: rpm -qp --requires is not reading them")
	}
	topdir := t.TempDir()
	spec := filepath.Join(topdir, "host-provides.spec")
	var b strings.Builder
	b.WriteString("Name: debian-host-provides\nVersion: 1\nRelease: 1\nLicense: MIT\nBuildArch: noarch\n")
	b.WriteString("Summary: Test only: what dpkg installed on this Debian test host\n")
	for _, p := range provides {
		fmt.Fprintf(&b, "Provides: %s\n", p)
	}
	b.WriteString("%description\nTest only: declares to rpm what dpkg installed on a Debian test host.\n%files\n")
	if err := os.WriteFile(spec, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("rpmbuild", "-bb", "--define", "_topdir "+topdir,
		"--define", "_rpmdir "+outDir, "--define", "_build_name_fmt %%{NAME}.rpm", spec).CombinedOutput()
	if err != nil {
		t.Fatalf("rpmbuild host provides: %v\n%s", err, out)
	}
	t.Logf("test-only provides for the Debian hosts: %s", strings.Join(provides, ", "))
	return filepath.Join(outDir, "debian-host-provides.rpm")
}
