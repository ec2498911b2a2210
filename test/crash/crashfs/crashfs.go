// Package crashfs is a FUSE file system for host-crash tests: a loopback
// onto a backing directory whose durability is exactly "only what was
// fsynced survives", and a Crash that throws away everything else.
//
// What it models (the guarantees POSIX and ext4 data=ordered both give, and
// nothing more):
//   - fsync of a file makes that file's data and size durable. Not its name:
//     a new file whose directory was not synced is gone after a crash.
//   - fsync of a directory makes that directory's entries durable (created,
//     renamed, removed names), pointing at the files' own durable content:
//     a file created and named durably but never synced comes back empty,
//     as ext4's delayed allocation leaves it.
//   - writes, truncates, creates, renames and unlinks that were not synced
//     are lost at a Crash(Strict). Crash(WriteBack) instead keeps a random
//     part of them, as a kernel's write-back cut short: every name change
//     (a journal commit just before the crash) and, per file, a random
//     subset of dirty 4 KiB pages with the size torn at any byte, leaving
//     holes of zeros (harsher than ext4, which writes a file back mostly in
//     order).
//
// Files are opened with direct I/O and the kernel caches no names or
// attributes, so every write, truncate and fsync reaches the model.
//
// What it does not model: ext4 commits the whole journal on any fsync, so
// there an fsync also makes other files' name changes durable; here it does
// not (stricter). Hard links, symlinks, O_TMPFILE, fallocate and
// copy_file_range are refused rather than modelled, and an fsync of a file
// already unlinked fails. Sector-level tearing inside a page and bit rot
// are not modelled. A file renamed between two directories of which only
// one was synced may come back under both names, as two copies.
package crashfs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Mode says what a Crash keeps of what was not synced.
type Mode int

const (
	// Strict keeps nothing that was not synced.
	Strict Mode = iota
	// WriteBack keeps every name change and a random part of unsynced data.
	WriteBack
)

func (m Mode) String() string {
	if m == WriteBack {
		return "writeback"
	}
	return "strict"
}

// Op is a write or an fsync that reached the file system.
type Op struct {
	Kind OpKind
	Path string // relative to the mount point
}

// OpKind is what an Op did.
type OpKind int

const (
	Write OpKind = iota
	FileSync
	DirSync
)

// FS is a mounted crash file system.
type FS struct {
	backing, mountpoint string
	server              *fuse.Server

	mu      sync.Mutex
	root    *inode
	rootIno uint64
	live    map[uint64]*inode // by the backing file's inode number
	// frozen is set when the host "dies": later changes and fsyncs never
	// return (they fail once Crash unmounts), so nothing more becomes durable
	// and no caller learns of a sync that did not happen.
	frozen bool
	thaw   chan struct{}
	freeze func(Op) bool // arms FreezeAfter; nil when not armed
	frozeC chan struct{} // closed when frozen
	syncs  int
	// syncDelay makes every fsync take at least this long: a slow disk.
	syncDelay time.Duration
}

// Available says why this process cannot mount a crash file system (it
// needs root and /dev/fuse), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("mounting FUSE needs root, euid is %d", os.Geteuid())
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// Mount mounts a crash file system of backing at mountpoint; everything
// already in backing is durable. The test must be root and /dev/fuse usable.
func Mount(backing, mountpoint string) (*FS, error) {
	c := &FS{backing: backing, mountpoint: mountpoint}
	if err := c.mount(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *FS) mount() error {
	root, live, err := snapshot(c.backing)
	if err != nil {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(c.backing, &st); err != nil {
		return fmt.Errorf("crashfs: %w", err)
	}
	c.mu.Lock()
	c.root, c.rootIno, c.live, c.frozen, c.freeze, c.syncDelay = root, st.Ino, live, false, nil, 0
	c.thaw, c.frozeC = make(chan struct{}), make(chan struct{})
	c.mu.Unlock()

	loop, err := fs.NewLoopbackRoot(c.backing)
	if err != nil {
		return fmt.Errorf("crashfs: loopback root: %w", err)
	}
	top := &node{LoopbackNode: loop.(*fs.LoopbackNode), c: c}
	top.RootData.RootNode = top
	// No kernel caching of names or attributes, so every operation reaches us.
	var zero time.Duration
	server, err := fs.Mount(c.mountpoint, top, &fs.Options{
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName: "crashfs", Name: "crashfs",
			DirectMount: true, DirectMountStrict: true,
		},
	})
	if err != nil {
		return fmt.Errorf("crashfs: mount %s: %w", c.mountpoint, err)
	}
	c.server = server
	return nil
}

// Unmount unmounts the file system, leaving backing as it is live.
func (c *FS) Unmount() error {
	c.Release()
	return c.server.Unmount()
}

// Syncs returns how many fsyncs made something durable.
func (c *FS) Syncs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.syncs
}

// SetSyncDelay makes every later fsync take at least d, as on a slow or
// overloaded disk, until the next Crash.
func (c *FS) SetSyncDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.syncDelay = d
}

// Freeze stops durability now: the host dies at this instant.
func (c *FS) Freeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.freezeLocked()
}

func (c *FS) freezeLocked() {
	if !c.frozen {
		c.frozen = true
		close(c.frozeC)
	}
}

// FreezeAfter makes the host die right after the first write or fsync for
// which after returns true reached the disk (before the caller learns of it).
// The returned channel is closed then.
func (c *FS) FreezeAfter(after func(Op) bool) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.freeze = after
	return c.frozeC
}

// Crash is the host's crash and reboot: it freezes durability, unmounts,
// replaces backing with the durable state (plus what mode keeps of the rest)
// and mounts it again. Stop the processes using the mount first: SIGKILL,
// Release, wait.
func (c *FS) Crash(mode Mode, rng *rand.Rand) error {
	c.Release()
	if err := c.server.Unmount(); err != nil {
		return fmt.Errorf("crashfs: unmount: %w", err)
	}
	if mode == WriteBack {
		if err := c.writeBackAll(c.backing, rng); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(c.backing)
	if err != nil {
		return fmt.Errorf("crashfs: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(c.backing, e.Name())); err != nil {
			return fmt.Errorf("crashfs: %w", err)
		}
	}
	if err := restore(c.backing, c.root); err != nil {
		return err
	}
	return c.mount()
}

// Release freezes the host if it is not yet, and fails the changes and
// fsyncs blocked on it. A killed process cannot exit while one of its
// threads waits in a FUSE request: SIGKILL it, then Release.
func (c *FS) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.freezeLocked()
	select {
	case <-c.thaw:
	default:
		close(c.thaw)
	}
}

// writeBackAll makes every live name under path durable and writes back a
// random part of every file's unsynced data.
func (c *FS) writeBackAll(path string, rng *rand.Rand) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var walk func(path string) (*inode, error)
	walk = func(path string) (*inode, error) {
		info, err := os.Lstat(path)
		if err != nil {
			return nil, fmt.Errorf("crashfs: %w", err)
		}
		n := c.inodeLocked(info)
		if !info.IsDir() {
			return n, n.writeBack(path, rng)
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("crashfs: %w", err)
		}
		clear(n.entries)
		for _, e := range entries {
			if n.entries[e.Name()], err = walk(filepath.Join(path, e.Name())); err != nil {
				return nil, err
			}
		}
		return n, nil
	}
	root, err := walk(path)
	c.root = root
	return err
}

// inodeLocked returns the model of a live file, new (empty, not durable
// under any name) if it was created since the mount.
func (c *FS) inodeLocked(info os.FileInfo) *inode {
	ino := info.Sys().(*syscall.Stat_t).Ino
	n := c.live[ino]
	if n == nil {
		n = newInode(info.IsDir())
		c.live[ino] = n
	}
	return n
}

// dead blocks a change once the host is frozen (a dead host does nothing
// more) until Crash, then fails it. A change racing with Freeze may still
// reach the backing directory, as if it came just before; only Crash(WriteBack)
// can keep it, and only as unsynced data.
func (c *FS) dead() syscall.Errno {
	c.mu.Lock()
	frozen, thaw := c.frozen, c.thaw
	c.mu.Unlock()
	if !frozen {
		return 0
	}
	<-thaw
	return syscall.EIO
}

// sync makes the live state of the file or directory at rel durable, unless
// the host is frozen, in which case it waits for the crash.
func (c *FS) sync(rel string, ino uint64, dir bool) syscall.Errno {
	c.mu.Lock()
	delay := c.syncDelay
	c.mu.Unlock()
	time.Sleep(delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Checked under the lock Freeze takes: no fsync completes after it.
	if c.frozen {
		thaw := c.thaw
		c.mu.Unlock()
		<-thaw
		c.mu.Lock()
		return syscall.EIO
	}
	path := filepath.Join(c.backing, rel)
	n := c.live[ino]
	if n == nil {
		n = newInode(dir)
		c.live[ino] = n
	}
	var err error
	if dir {
		err = c.syncDirLocked(path, n)
	} else {
		err = n.syncFile(path)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	c.syncs++
	kind := FileSync
	if dir {
		kind = DirSync
	}
	c.afterLocked(Op{Kind: kind, Path: rel})
	return 0
}

// afterLocked freezes the host if FreezeAfter is armed for op.
func (c *FS) afterLocked(op Op) {
	if c.freeze != nil && !c.frozen && c.freeze(op) {
		c.freezeLocked()
	}
}

func (c *FS) syncDirLocked(path string, n *inode) error {
	entries, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("crashfs: read %s to sync it: %w", path, err)
	}
	clear(n.entries)
	for _, e := range entries {
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("crashfs: %w", err)
		}
		n.entries[e.Name()] = c.inodeLocked(info)
	}
	return nil
}

// forget is called before name in dir is removed or replaced: if it was the
// file's last name, its inode number may be reused by a new file, which
// must not inherit its durable content.
func (c *FS) forget(path string) {
	var st syscall.Stat_t
	if syscall.Lstat(path, &st) != nil || (st.Nlink > 1 && st.Mode&syscall.S_IFMT != syscall.S_IFDIR) {
		return
	}
	c.mu.Lock()
	delete(c.live, st.Ino)
	c.mu.Unlock()
}

// node is a loopback node that tells the model of writes, truncates,
// removals and fsyncs, and opens files with direct I/O.
type node struct {
	*fs.LoopbackNode
	c *FS
}

var (
	_ fs.NodeWrapChilder    = (*node)(nil)
	_ fs.NodeWriter         = (*node)(nil)
	_ fs.NodeFsyncer        = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
)

func (n *node) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), c: n.c}
}

func (n *node) rel() string { return n.Path(n.RootData.RootNode.EmbeddedInode()) }

// ino is the backing file's inode number, which the loopback uses as the
// node's (the root's is FUSE's own).
func (n *node) ino() uint64 {
	if n.IsRoot() {
		return n.c.rootIno
	}
	return n.StableAttr().Ino
}

func (n *node) isDir() bool { return n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR }

func (n *node) touch(from int64) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if m := n.c.live[n.ino()]; m != nil {
		m.touch(from)
		return
	}
	m := newInode(false)
	m.touch(from)
	n.c.live[n.ino()] = m
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		if errno := n.c.dead(); errno != 0 {
			return nil, 0, errno
		}
	}
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno == 0 && flags&syscall.O_TRUNC != 0 {
		n.touch(0)
	}
	return fh, fuseFlags | fuse.FOPEN_DIRECT_IO, errno
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.c.dead(); errno != 0 {
		return nil, nil, 0, errno
	}
	child, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno == 0 && flags&syscall.O_TRUNC != 0 {
		child.Operations().(*node).touch(0)
	}
	return child, fh, fuseFlags | fuse.FOPEN_DIRECT_IO, errno
}

func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := n.c.dead(); errno != 0 {
		return 0, errno
	}
	n.touch(off)
	written, errno := f.(fs.FileWriter).Write(ctx, data, off)
	n.c.mu.Lock()
	n.c.afterLocked(Op{Kind: Write, Path: n.rel()})
	n.c.mu.Unlock()
	return written, errno
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.c.dead(); errno != 0 {
		return errno
	}
	if size, ok := in.GetSize(); ok {
		n.touch(int64(size))
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

func (n *node) Fsync(_ context.Context, _ fs.FileHandle, _ uint32) syscall.Errno {
	return n.c.sync(n.rel(), n.ino(), n.isDir())
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := n.c.dead(); errno != 0 {
		return errno
	}
	n.c.forget(filepath.Join(n.c.backing, n.rel(), name))
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.c.dead(); errno != 0 {
		return errno
	}
	n.c.forget(filepath.Join(n.c.backing, n.rel(), name))
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := n.c.dead(); errno != 0 {
		return errno
	}
	if flags&fs.RENAME_EXCHANGE == 0 {
		n.c.forget(filepath.Join(n.c.backing, newParent.(*node).rel(), newName))
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.c.dead(); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

// OpendirHandle opens a directory with a handle whose fsync reaches the
// model (go-fuse hands a directory's fsync to its handle).
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{DirStream: fh.(fs.DirStream), n: n}, fuseFlags, 0
}

type dirHandle struct {
	fs.DirStream
	n *node
}

var (
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
)

func (d *dirHandle) Fsyncdir(context.Context, uint32) syscall.Errno {
	return d.n.c.sync(d.n.rel(), d.n.ino(), true)
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	return d.DirStream.(fs.FileReaddirenter).Readdirent(ctx)
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.DirStream.(fs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	d.DirStream.(fs.FileReleasedirer).Releasedir(ctx, flags)
}

// Operations the model does not cover are refused, not passed through.

func (n *node) Link(context.Context, fs.InodeEmbedder, string, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Symlink(context.Context, string, string, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOTSUP
}

func (n *node) Allocate(context.Context, fs.FileHandle, uint64, uint64, uint32) syscall.Errno {
	return syscall.ENOTSUP
}

func (n *node) CopyFileRange(context.Context, fs.FileHandle, uint64, *fs.Inode, fs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}
