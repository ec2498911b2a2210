package ansible

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// repoRoot is the repository, relative to this package.
const repoRoot = "../.."

// relayRPMs returns the binary RPMs `make rpm` built in build/RPMS, building them first
// when there are none.
func relayRPMs(t *testing.T) []string {
	t.Helper()
	find := func() []string {
		rpms, _ := filepath.Glob(filepath.Join(repoRoot, "build/RPMS/*/fedmsg-relay*.rpm"))
		return rpms
	}
	rpms := find()
	if len(rpms) == 0 {
		start := time.Now()
		cmd := exec.Command("make", "rpm")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make rpm: %v\n%s", err, out)
		}
		t.Logf("make rpm took %s", time.Since(start).Round(time.Second))
		rpms = find()
	}
	if len(rpms) == 0 {
		t.Fatal("make rpm built no build/RPMS/*/fedmsg-relay*.rpm")
	}
	return rpms
}

// localRepo makes a dnf repository of rpms plus the host-provides RPM they need here.
func localRepo(t *testing.T, rpms []string) string {
	t.Helper()
	return host.LocalRepo(t, rpms)
}
