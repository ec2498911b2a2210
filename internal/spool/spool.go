package spool

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
)

// Reasons a message is dropped, reported through Events.Dropped.
const (
	DropFull       = "spool_full"  // oldest unconfirmed messages removed to stay under MaxBytes
	DropBufferFull = "buffer_full" // the writer fell behind by more than pendingLimit
	DropBudget     = "budget"      // the relay's shared byte budget had no room for the hand-off
	DropClosed     = "closed"      // Append after Close
	DropError      = "spool_error" // writing or reading the spool failed
	DropTooLarge   = "too_large"   // a record over maxRecordBytes
	DropCorrupt    = "corrupt"     // a damaged record, or one a damaged record made unreachable
	DropTorn       = "torn"        // a segment's end cut off at recovery: a write a crash interrupted
)

// DropReasons lists every reason Events.Dropped may report.
var DropReasons = []string{DropFull, DropBufferFull, DropBudget, DropClosed, DropError, DropTooLarge, DropCorrupt, DropTorn}

const (
	maxSegmentBytes = 16 << 20
	// pendingLimit bounds the in-memory buffer between Append and the
	// writer; it only fills if the disk stalls.
	pendingLimit        = 16 << 20
	initialPendingBytes = 1 << 20
	// writeWait bounds how long a burst's Append waits for the writer before
	// it stops waiting until the writer has caught up (a stalled disk must
	// not stall the relay); a Completion has no such bound.
	writeWait = 500 * time.Millisecond
	// cursorSaveInterval bounds how many confirmed messages a crash re-sends.
	cursorSaveInterval = time.Second
	// damageLogInterval bounds how often damage is logged: a damaged disk
	// must not flood the log.
	damageLogInterval = 10 * time.Second
	// dropLogInterval bounds how often Append logs that it drops.
	dropLogInterval = 10 * time.Second
)

// DefaultSyncInterval bounds what a host crash loses under SyncInterval.
const DefaultSyncInterval = 200 * time.Millisecond

// SyncPolicy says when written records are forced to the disk (fsync). A
// process crash loses nothing the writer wrote whatever the policy: the page
// cache survives it. The policy decides what a host crash loses.
type SyncPolicy int

const (
	// SyncInterval syncs the active segment every Options.SyncInterval.
	SyncInterval SyncPolicy = iota
	// SyncAlways syncs after every write, before Append's Completion completes.
	SyncAlways
	// SyncNever leaves write-back to the kernel, even on Close.
	SyncNever
)

// Record is one spooled message.
type Record struct {
	Seq      uint64
	Received time.Time
	Topic    []byte
	Body     []byte
}

// Events receive what the spool wrote and dropped, for metrics; they are
// called from Append's caller and from the writer goroutine.
type Events struct {
	Appended func(n int)
	Dropped  func(reason string, n uint64)
}

// Options configure a spool.
type Options struct {
	Dir      string
	MaxBytes int64 // when over it, the oldest segments are dropped
	Sync     SyncPolicy
	// SyncInterval is the period of SyncInterval.
	SyncInterval time.Duration
	Log          hclog.Logger
	Events       Events
	// Budget, when set, is charged with the pending buffer's bytes from
	// Append until the writer wrote them; nil leaves only pendingLimit.
	Budget *membudget.Budget
}

// Spool is a bounded on-disk queue: Append is the producers' side, one
// Reader per consumer reads in order from any sequence number on, and Commit
// releases what was consumed.
//
// Lock order: pendingMu and mu are never held together.
type Spool struct {
	dir          string
	maxBytes     int64
	segmentBytes int64
	log          hclog.Logger
	events       Events
	sync         SyncPolicy
	syncInterval time.Duration
	budget       *membudget.Budget // nil: not charged

	// Filled by Append (the relay's hot path), drained by the writer goroutine.
	pendingMu      sync.Mutex
	pending        []byte
	pendingRecords int
	written        *Completion // completes once pending is written; nil while it is empty
	closed         bool
	wake           chan struct{} // cap 1: pending has data
	// writerBehind is set when Append gave up waiting for the writer (a
	// stalled disk) and cleared by the writer's next completed write.
	writerBehind atomic.Bool
	dropLogged   atomic.Int64 // unix nanoseconds Append last logged a drop

	// Owned by the writer goroutine.
	spare  []byte
	active *os.File // last segment, open for append
	dirty  bool     // active has writes not yet synced
	// syncFailed is set by a failed sync, cleared by each flushPending.
	syncFailed bool

	dirDirty atomic.Bool // segments were created or removed since the last directory sync

	mu         sync.Mutex
	segments   []*segment // oldest first; the last one is active
	totalBytes int64
	nextSeq    uint64        // sequence number of the next record written
	commitSeq  uint64        // oldest record not yet confirmed
	sentEnd    uint64        // one past the newest record ever published
	saved      [2]uint64     // commitSeq and sentEnd as last written to the cursor file
	readable   chan struct{} // cap 1: records were written or dropped
	damageLog  time.Time     // when damage was last logged
	unlogged   uint64        // records skipped since then, not yet logged

	stop    chan struct{}
	stopped chan struct{}
}

// Open creates the spool directory or recovers what a previous run left in
// it, then starts the writer goroutine on the fully built spool.
func Open(o Options) (*Spool, error) {
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", o.Dir, err)
	}
	s := &Spool{
		dir:          o.Dir,
		maxBytes:     o.MaxBytes,
		segmentBytes: min(max(o.MaxBytes/16, 4<<10), maxSegmentBytes),
		log:          o.Log,
		events:       o.Events,
		sync:         o.Sync,
		syncInterval: cmp.Or(o.SyncInterval, DefaultSyncInterval),
		budget:       o.Budget,
		wake:         make(chan struct{}, 1),
		// Start both buffers big enough that Append rarely grows one.
		pending:  make([]byte, 0, initialPendingBytes),
		spare:    make([]byte, 0, initialPendingBytes),
		readable: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	go s.runWriter()
	return s, nil
}

// segmentAt returns the bounds and size in bytes of the oldest segment
// holding records at or after seq.
func (s *Spool) segmentAt(seq uint64) (first, end uint64, size int64, found bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segments {
		if g.endSeq() > seq {
			return g.firstSeq, g.endSeq(), g.size, true
		}
	}
	return 0, 0, 0, false
}

// damaged counts n records from seq on, in the segment starting at first, as
// lost to damage, and logs it unless it logged damage recently.
func (s *Spool) damaged(first, seq, n uint64, err error) {
	s.events.Dropped(DropCorrupt, n)
	s.mu.Lock()
	s.unlogged += n
	skipped, log := s.unlogged, time.Since(s.damageLog) >= damageLogInterval
	if log {
		s.damageLog, s.unlogged = time.Now(), 0
	}
	s.mu.Unlock()
	if log {
		s.log.Error("spool damaged, skipping unreadable records", "file", filepath.Join(s.dir, segmentName(first)),
			"record", seq, "error", err, "skipped_since_last_report", skipped)
	}
}

// Readable receives a value after records were written or dropped.
func (s *Spool) Readable() <-chan struct{} { return s.readable }

// Commit records that every record before seq is confirmed, and that records
// before sentEnd were published; it deletes the segments that hold only
// confirmed records (except the active one).
func (s *Spool) Commit(seq, sentEnd uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sentEnd = max(s.sentEnd, sentEnd)
	if seq <= s.commitSeq {
		return
	}
	s.commitSeq = seq
	for len(s.segments) > 1 && s.segments[0].endSeq() <= seq {
		s.removeSegmentLocked()
	}
}

// Cursor returns the oldest unconfirmed record and one past the newest
// record ever published.
func (s *Spool) Cursor() (commitSeq, sentEnd uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commitSeq, s.sentEnd
}

// State returns the records not yet confirmed and the spool's size on disk.
func (s *Spool) State() (unconfirmed uint64, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq - s.commitSeq, s.totalBytes
}

// Close writes what Append took and saves the cursor. Later Append calls
// drop their messages (DropClosed).
func (s *Spool) Close() error {
	s.pendingMu.Lock()
	already := s.closed
	s.closed = true
	s.pendingMu.Unlock()
	if already {
		return nil
	}
	close(s.stop)
	<-s.stopped
	s.flushPending()
	s.syncWrites()
	s.closeActive()
	return s.saveCursor()
}
