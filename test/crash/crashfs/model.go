package crashfs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
)

// inode is the durable state of one file or directory: what a disk would
// hold after a crash. Live state is the backing directory itself.
type inode struct {
	dir bool
	// data is a file's durable content (its data and its size).
	data []byte
	// dirtyFrom is the first byte written or truncated since the last
	// fsync (clean: math.MaxInt64), so an fsync copies only what changed.
	dirtyFrom int64
	// entries are a directory's durable names.
	entries map[string]*inode
}

func newInode(dir bool) *inode {
	n := &inode{dir: dir, dirtyFrom: math.MaxInt64}
	if dir {
		n.entries = map[string]*inode{}
	}
	return n
}

func (n *inode) touch(from int64) { n.dirtyFrom = min(n.dirtyFrom, max(from, 0)) }

// syncFile makes a file's live content at path durable.
func (n *inode) syncFile(path string) error {
	if n.dirtyFrom == math.MaxInt64 {
		return nil
	}
	live, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("crashfs: read %s to sync it: %w", path, err)
	}
	n.data = append(n.data[:min(int64(len(n.data)), n.dirtyFrom, int64(len(live)))], live[min(n.dirtyFrom, int64(len(live))):]...)
	n.dirtyFrom = math.MaxInt64
	return nil
}

// writeBack makes a random part of a file's unsynced changes durable, as a
// kernel's write-back interrupted by a crash: each dirty 4 KiB page
// independently reached the disk or not (a page that did not reads as it was
// durable before, or as zeros past the old end: a hole), and the size is any
// byte between the old and the new one.
func (n *inode) writeBack(path string, rng *rand.Rand) error {
	if n.dirtyFrom == math.MaxInt64 {
		return nil
	}
	live, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("crashfs: read %s to write it back: %w", path, err)
	}
	lo, hi := min(len(n.data), len(live)), max(len(n.data), len(live))
	size := lo + rng.IntN(hi-lo+1)
	out := make([]byte, size)
	copy(out, n.data)
	const page = 4096
	for p := int(n.dirtyFrom) / page * page; p < size; p += page {
		if rng.IntN(4) == 0 {
			continue // this page was not written back
		}
		end := min(p+page, size)
		clear(out[p:end])
		if p < len(live) {
			copy(out[p:end], live[p:min(end, len(live))])
		}
	}
	n.data, n.dirtyFrom = out, math.MaxInt64
	return nil
}

// snapshot reads a tree as fully durable (a freshly mounted disk), returning
// its root and every inode by inode number.
func snapshot(root string) (*inode, map[uint64]*inode, error) {
	live := map[uint64]*inode{}
	var read func(path string) (*inode, error)
	read = func(path string) (*inode, error) {
		info, err := os.Lstat(path)
		if err != nil {
			return nil, fmt.Errorf("crashfs: %w", err)
		}
		n := newInode(info.IsDir())
		live[info.Sys().(*syscall.Stat_t).Ino] = n
		switch {
		case info.IsDir():
			entries, err := os.ReadDir(path)
			if err != nil {
				return nil, fmt.Errorf("crashfs: %w", err)
			}
			for _, e := range entries {
				if n.entries[e.Name()], err = read(filepath.Join(path, e.Name())); err != nil {
					return nil, err
				}
			}
		case info.Mode().IsRegular():
			if n.data, err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("crashfs: %w", err)
			}
		default:
			return nil, fmt.Errorf("crashfs: %s: only files and directories are modelled", path)
		}
		return n, nil
	}
	n, err := read(root)
	return n, live, err
}

// restore writes the durable tree below n into the empty directory path.
func restore(path string, n *inode) error {
	for name, child := range n.entries {
		p := filepath.Join(path, name)
		if child.dir {
			if err := os.Mkdir(p, 0o750); err != nil {
				return fmt.Errorf("crashfs: restore: %w", err)
			}
			if err := restore(p, child); err != nil {
				return err
			}
			continue
		}
		if err := os.WriteFile(p, child.data, 0o640); err != nil {
			return fmt.Errorf("crashfs: restore: %w", err)
		}
	}
	return nil
}
