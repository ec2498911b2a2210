package spool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

const syncHelperEnv = "SPOOL_SYNC_HELPER" // "<policy> <dir>"

// TestSyncHelper is the process TestSyncPolicy traces: it appends 20 batches
// under a policy, waits three sync intervals and exits without Close, as a
// killed relay would.
func TestSyncHelper(t *testing.T) {
	arg := os.Getenv(syncHelperEnv)
	if arg == "" {
		t.Skip("run by TestSyncPolicy")
	}
	var policy SyncPolicy
	var dir string
	if _, err := fmt.Sscan(arg, &policy, &dir); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: policy, Log: hclog.NewNullLogger(),
		Events: Events{Appended: func(int) {}, Dropped: func(string, uint64) {}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		s.appendOne([]byte("t"), fmt.Appendf(nil, "m%d", i), time.Now())
	}
	time.Sleep(3 * DefaultSyncInterval)
	os.Exit(0)
}

// TestSyncPolicy counts, with strace, the fsync calls of a process that
// appends 20 batches and dies: one or more per batch under SyncAlways, a
// few (the interval's) under SyncInterval, none under SyncNever.
func TestSyncPolicy(t *testing.T) {
	strace, err := exec.LookPath("strace")
	testutil.Require(t, err == nil, "strace")
	for _, tc := range []struct {
		policy   SyncPolicy
		min, max int
	}{
		{SyncAlways, 20, 1000},
		{SyncInterval, 1, 10},
		{SyncNever, 0, 0},
	} {
		dir, trace := t.TempDir(), filepath.Join(t.TempDir(), "strace")
		cmd := exec.Command(strace, "-f", "-e", "trace=fsync,fdatasync", "-o", trace, os.Args[0], "-test.run", "^TestSyncHelper$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s", syncHelperEnv, tc.policy, dir))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("policy %d: %v\n%s", tc.policy, err, out)
		}
		data, err := os.ReadFile(trace)
		if err != nil {
			t.Fatal(err)
		}
		syncs := strings.Count(string(data), "sync(")
		if syncs < tc.min || syncs > tc.max {
			t.Errorf("policy %d: %d fsync calls for 20 batches, want %d to %d:\n%s", tc.policy, syncs, tc.min, tc.max, data)
		}
		t.Logf("policy %d: %d fsync calls for 20 batches", tc.policy, syncs)
	}
}
