package crashfs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

func mount(t *testing.T) (*FS, string) {
	t.Helper()
	err := Available()
	testutil.Require(t, err == nil, fmt.Sprintf("FUSE (%v)", err))
	backing, mnt := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(backing, "old"), []byte("durable"), 0o640); err != nil {
		t.Fatal(err)
	}
	c, err := Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Unmount() })
	return c, mnt
}

func write(t *testing.T, path string, flag int, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, flag|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func crash(t *testing.T, c *FS, mode Mode) {
	t.Helper()
	if err := c.Crash(mode, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
}

// files returns the names and contents under dir.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(data)
	}
	return got
}

func TestStrictCrashKeepsOnlyWhatWasSynced(t *testing.T) {
	c, mnt := mount(t)
	p := func(name string) string { return filepath.Join(mnt, name) }
	const appendFlags = os.O_CREATE | os.O_APPEND

	write(t, p("synced"), appendFlags, "one,", true)
	syncDir(t, mnt)
	write(t, p("synced"), appendFlags, "two,", true)
	write(t, p("synced"), appendFlags, "lost", false)
	write(t, p("named-only"), appendFlags, "lost", false)
	write(t, p("cursor.tmp"), os.O_CREATE|os.O_TRUNC, "new cursor", true)
	if err := os.Rename(p("cursor.tmp"), p("cursor")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("old")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	// Neither synced: the truncate and the removal are undone.
	if err := os.Truncate(p("synced"), 2); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("cursor")); err != nil {
		t.Fatal(err)
	}
	write(t, p("data-only"), appendFlags, "synced, but lost with its name", true)
	syncs := c.Syncs()

	crash(t, c, Strict)
	got := files(t, mnt)
	want := map[string]string{"synced": "one,two,", "named-only": "", "cursor": "new cursor"}
	if len(got) != len(want) || got["synced"] != want["synced"] || got["named-only"] != "" || got["cursor"] != want["cursor"] {
		t.Errorf("after the crash: %q, want %q", got, want)
	}
	if syncs != 6 {
		t.Errorf("%d fsyncs reached the file system, want 6 (4 files, 2 directories)", syncs)
	}
}

func TestWriteBackKeepsNamesAndPartOfTheData(t *testing.T) {
	c, mnt := mount(t)
	synced := bytes.Repeat([]byte("s"), 10000)
	if err := os.WriteFile(filepath.Join(mnt, "seg"), synced, 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "seg"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("u"), 50000)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	crash(t, c, WriteBack)
	got, err := os.ReadFile(filepath.Join(mnt, "seg"))
	if err != nil {
		t.Fatalf("the unsynced name was not kept: %v", err)
	}
	if len(got) < len(synced) || len(got) > len(synced)+50000 || !bytes.Equal(got[:len(synced)], synced) {
		t.Fatalf("got %d bytes, want the %d synced ones then part of 50000", len(got), len(synced))
	}
	for i, b := range got[len(synced):] {
		if b != 'u' && b != 0 {
			t.Fatalf("byte %d is %q: neither written back nor a hole", len(synced)+i, b)
		}
	}
}

func TestFrozenHostSyncsNothingMore(t *testing.T) {
	c, mnt := mount(t)
	frozen := c.FreezeAfter(func(op Op) bool { return op.Kind == FileSync && op.Path == "a" })
	write(t, filepath.Join(mnt, "a"), os.O_CREATE, "data kept, name lost", true)
	<-frozen
	done := make(chan error, 1)
	go func() {
		d, err := os.Open(mnt)
		if err == nil {
			err = d.Sync()
			d.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a directory fsync on a dead host returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	crash(t, c, Strict)
	if err := <-done; err == nil {
		t.Error("the fsync blocked at the crash succeeded")
	}
	if got := files(t, mnt); len(got) != 1 || got["old"] != "durable" {
		t.Errorf("after the crash: %q, want only old", got)
	}
}
