package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"
)

// Completion tells when the records of one Append are as durable as the
// spool's SyncPolicy promises: written to their segment (the page cache,
// which survives a killed process), and under SyncAlways also synced with
// the directory entry of a new segment (which survives a host crash).
type Completion struct {
	done   chan struct{}
	failed string // set before done is closed
}

// Done is closed once the records are durable or failed to be.
func (c *Completion) Done() <-chan struct{} { return c.done }

// Failed is, once Done is closed, "" when the records are durable, else
// the drop reason why not (DropBudget, DropBufferFull, DropTooLarge,
// DropClosed: none of them kept; DropError: their write or sync failed).
func (c *Completion) Failed() string { return c.failed }

func newCompletion() *Completion { return &Completion{done: make(chan struct{})} }

func (c *Completion) complete(failed string) {
	c.failed = failed
	close(c.done)
}

// CompletionFailures lists every reason Completion.Failed may report.
var CompletionFailures = []string{DropBudget, DropBufferFull, DropTooLarge, DropClosed, DropError}

// dropped are the completions of batches Append did not keep, by reason:
// complete from the start.
var dropped = func() map[string]*Completion {
	m := map[string]*Completion{}
	for _, reason := range CompletionFailures {
		m[reason] = newCompletion()
		m[reason].complete(reason)
	}
	return m
}()

// Append copies a batch of messages into the pending buffer under one lock,
// all stamped with received, charging their bytes to the budget until the
// writer goroutine wrote them, and returns how many it kept. What it has to
// drop it reports through Events.Dropped.
//
// With confirm (a client waits to be told its message is safe) it keeps the
// whole batch or none of it, and returns the batch's Completion; it never
// waits for the writer, so a slow disk delays only those who wait on the
// Completion. Without confirm the Completion is nil and a kill before the
// writer's next write loses what is pending. Either way, once over half of
// pendingLimit is pending the caller waits for the writer (at most
// writeWait, and not while the writer is behind): a burst slows it down
// rather than overflow the buffer.
func (s *Spool) Append(topics, bodies [][]byte, received time.Time, confirm bool) (int, *Completion) {
	unix := uint64(received.Unix())
	var batchBytes int64
	for i, topic := range topics {
		batchBytes += int64(recordHeaderBytes + payloadHeaderBytes + len(topic) + len(bodies[i]))
	}
	// One reservation for the whole batch; record by record only when the
	// budget has no room for all of it (never for a confirmed batch).
	reserved := s.reserve(batchBytes)
	if confirm && !reserved {
		s.handOffDropped(DropBudget, uint64(len(topics)))
		return 0, dropped[DropBudget]
	}
	var kept, tooBig, noRoom, noBudget uint64
	var keptBytes int64
	s.pendingMu.Lock()
	if s.closed {
		s.pendingMu.Unlock()
		if reserved {
			s.release(batchBytes)
		}
		s.events.Dropped(DropClosed, uint64(len(topics)))
		return 0, dropped[DropClosed]
	}
	// Only the first record of a batch wakes the writer, which takes them all.
	wake := len(s.pending) == 0
	if s.written == nil {
		s.written = newCompletion()
	}
	written, start := s.written, len(s.pending)
	for i, topic := range topics {
		body := bodies[i]
		size := recordHeaderBytes + payloadHeaderBytes + len(topic) + len(body)
		switch {
		case size-recordHeaderBytes > maxRecordBytes:
			tooBig++
			continue
		case len(s.pending)+size > pendingLimit && len(s.pending) > 0:
			noRoom++
			continue
		case !reserved && !s.reserve(int64(size)):
			noBudget++
			continue
		}
		// The writer fills in the CRC, keeping the checksum work off this path.
		s.pending = binary.LittleEndian.AppendUint32(s.pending, uint32(size-recordHeaderBytes))
		s.pending = binary.LittleEndian.AppendUint32(s.pending, 0)
		s.pending = binary.LittleEndian.AppendUint64(s.pending, unix)
		s.pending = binary.LittleEndian.AppendUint32(s.pending, uint32(len(topic)))
		s.pending = append(s.pending, topic...)
		s.pending = append(s.pending, body...)
		kept++
		keptBytes += int64(size)
	}
	// A confirmed batch that lost a record is taken back whole: its client
	// is refused, and nothing of it may reach the broker.
	var refused string
	if confirm && kept < uint64(len(topics)) {
		s.pending = s.pending[:start]
		refused = DropBufferFull
		if tooBig > 0 {
			refused = DropTooLarge
		}
		tooBig, noRoom = 0, 0
		if refused == DropTooLarge {
			tooBig = uint64(len(topics))
		} else {
			noRoom = uint64(len(topics))
		}
		kept, keptBytes = 0, 0
		wake = false
	}
	s.pendingRecords += int(kept)
	// A burst the writer has not caught up with waits anyway: the caller
	// slows down rather than overflow the buffer.
	burst := len(s.pending) > pendingLimit/2
	s.pendingMu.Unlock()
	if reserved {
		s.release(batchBytes - keptBytes)
	}
	if tooBig > 0 {
		s.events.Dropped(DropTooLarge, tooBig)
	}
	if noRoom > 0 {
		s.handOffDropped(DropBufferFull, noRoom)
	}
	if noBudget > 0 {
		s.handOffDropped(DropBudget, noBudget)
	}
	if wake && kept > 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	if burst && kept > 0 && !s.writerBehind.Load() {
		s.waitWritten(written)
	}
	switch {
	case refused != "":
		return 0, dropped[refused]
	case !confirm:
		return int(kept), nil
	}
	return int(kept), written
}

// handOffDropped counts messages Append had no room for and logs it at
// most once per dropLogInterval: while the room lacks, every batch drops.
func (s *Spool) handOffDropped(reason string, n uint64) {
	s.events.Dropped(reason, n)
	now, last := time.Now().UnixNano(), s.dropLogged.Load()
	if now-last >= int64(dropLogInterval) && s.dropLogged.CompareAndSwap(last, now) {
		s.log.Warn("no room to hand messages to the spool, dropping them", "reason", reason, "messages", n,
			"budget_used", s.budgetUsed(), "dir", s.dir)
	}
}

func (s *Spool) budgetUsed() int64 {
	if s.budget == nil {
		return 0
	}
	return s.budget.Used()
}

// reserve charges n bytes to the budget, if there is one, and reports
// whether they fit.
// reserve charges n bytes to the budget if it has room. If it has not, it
// asks the budget to take room back from strangers' unfinished messages
// (membudget's Reclaim) for the hand-offs to come, without waiting for it:
// Append never blocks the forwarding loop on the budget.
func (s *Spool) reserve(n int64) bool {
	if s.budget == nil || s.budget.Reserve(n) {
		return true
	}
	s.budget.Reclaim(n)
	return false
}

func (s *Spool) release(n int64) {
	if s.budget != nil {
		s.budget.Release(n)
	}
}

func (s *Spool) waitWritten(written *Completion) {
	timer := time.NewTimer(writeWait)
	defer timer.Stop()
	select {
	case <-written.done:
	case <-timer.C:
		if !s.writerBehind.Swap(true) {
			s.log.Warn("spool writer is behind; not waiting for it until it catches up", "dir", s.dir, "waited", writeWait)
		}
	}
}

func (s *Spool) runWriter() {
	defer close(s.stopped)
	ticker := time.NewTicker(cursorSaveInterval)
	defer ticker.Stop()
	// Under SyncAlways the tick only syncs the directory after Commit removed segments.
	var syncTick <-chan time.Time
	if s.sync != SyncNever {
		t := time.NewTicker(s.syncInterval)
		defer t.Stop()
		syncTick = t.C
	}
	for {
		select {
		case <-s.wake:
			s.flushPending()
		case <-syncTick:
			s.syncWrites()
		case <-ticker.C:
			if err := s.saveCursor(); err != nil {
				s.log.Error("saving cursor failed", "error", err)
			}
		case <-s.stop:
			return
		}
	}
}

// flushPending moves the pending buffer to the segment files.
func (s *Spool) flushPending() {
	s.pendingMu.Lock()
	batch, records, written := s.pending, s.pendingRecords, s.written
	s.pending, s.pendingRecords, s.written = s.spare[:0], 0, nil
	s.pendingMu.Unlock()
	// Why the records are not durable, for those waiting on written.
	var failed string
	if written != nil {
		defer func() { written.complete(failed) }()
	}
	// Keep the buffer's capacity for the next swap: Enqueue then never grows it.
	s.spare = batch[:0]
	if records == 0 {
		return
	}
	// Written or dropped, the bytes are no longer held in memory.
	defer s.release(int64(len(batch)))
	s.syncFailed = false
	for len(batch) > 0 {
		n, count := s.fillSegment(batch)
		if err := s.writeActive(batch[:n], count); err != nil {
			s.log.Error("write failed, dropping messages", "dir", s.dir, "messages", count, "error", err)
			s.events.Dropped(DropError, uint64(count))
			failed = DropError
		}
		batch = batch[n:]
	}
	// Records whose sync failed (here, or the previous segment's as it was
	// rotated out) stay readable from the page cache, but are not durable as
	// SyncAlways promises.
	if s.sync == SyncAlways {
		s.syncWrites()
		if s.syncFailed {
			failed = DropError
		}
	}
	s.writerBehind.Store(false)
	s.events.Appended(records)
	select {
	case s.readable <- struct{}{}:
	default:
	}
}

// fillSegment sets the CRC of the leading records of batch that fit in the
// active segment (at least one) and returns their byte length and count.
func (s *Spool) fillSegment(batch []byte) (n, count int) {
	s.mu.Lock()
	room := s.segmentBytes
	if g := s.activeSegment(); g != nil {
		room -= g.size
	}
	s.mu.Unlock()
	for n < len(batch) {
		size := recordHeaderBytes + int(binary.LittleEndian.Uint32(batch[n:n+4]))
		if count > 0 && int64(n+size) > room {
			break
		}
		payload := batch[n+recordHeaderBytes : n+size]
		binary.LittleEndian.PutUint32(batch[n+4:n+8], crc32.Checksum(payload, crcTable))
		n += size
		count++
	}
	return n, count
}

func (s *Spool) activeSegment() *segment {
	if s.active == nil || len(s.segments) == 0 {
		return nil
	}
	return s.segments[len(s.segments)-1]
}

// writeActive appends count records to the active segment, starting a new
// segment when they would not fit, then enforces the size limit.
func (s *Spool) writeActive(data []byte, count int) error {
	s.mu.Lock()
	g := s.activeSegment()
	s.mu.Unlock()
	if g == nil || g.size+int64(len(data)) > s.segmentBytes {
		if err := s.rotate(); err != nil {
			return err
		}
		s.mu.Lock()
		g = s.activeSegment()
		s.mu.Unlock()
	}
	if _, err := s.active.Write(data); err != nil {
		// Cut off a partial write so the segment stays a sequence of whole records.
		if terr := s.active.Truncate(g.size); terr != nil {
			s.closeActive()
		}
		return fmt.Errorf("append to %s: %w", segmentName(g.firstSeq), err)
	}
	s.dirty = true
	s.mu.Lock()
	g.count += uint64(count)
	g.size += int64(len(data))
	s.nextSeq += uint64(count)
	s.totalBytes += int64(len(data))
	s.dropOldestLocked()
	s.mu.Unlock()
	return nil
}

// rotate closes the active segment and opens a new one starting at nextSeq.
func (s *Spool) rotate() error {
	s.closeActive()
	s.mu.Lock()
	first := s.nextSeq
	s.mu.Unlock()
	path := filepath.Join(s.dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	s.active = f
	s.dirDirty.Store(true)
	s.mu.Lock()
	s.segments = append(s.segments, &segment{firstSeq: first})
	s.mu.Unlock()
	return nil
}

// closeActive syncs (unless SyncNever) and closes the active segment. The
// directory is left to the next syncWrites: a flush that rotates through
// several segments syncs it once.
func (s *Spool) closeActive() {
	if s.active == nil {
		return
	}
	s.syncActive()
	if err := s.active.Close(); err != nil {
		s.log.Error("close segment failed", "error", err)
	}
	s.active = nil
}

// dropOldestLocked removes the oldest segments while the spool is over its
// limit, counting their unconfirmed records as dropped. The active segment stays.
func (s *Spool) dropOldestLocked() {
	for s.totalBytes > s.maxBytes && len(s.segments) > 1 {
		g := s.segments[0]
		if lost := g.endSeq() - max(g.firstSeq, min(s.commitSeq, g.endSeq())); lost > 0 {
			s.events.Dropped(DropFull, lost)
			s.log.Warn("spool full, dropped the oldest unconfirmed messages", "dir", s.dir, "messages", lost, "max_bytes", s.maxBytes)
		}
		s.removeSegmentLocked()
		s.commitSeq = max(s.commitSeq, s.segments[0].firstSeq)
	}
}

func (s *Spool) removeSegmentLocked() {
	g := s.segments[0]
	if err := os.Remove(filepath.Join(s.dir, segmentName(g.firstSeq))); err != nil {
		s.log.Error("remove segment failed", "error", err)
	}
	s.dirDirty.Store(true)
	s.totalBytes -= g.size
	s.segments = s.segments[1:]
}

// syncWrites forces the active segment's writes, then the directory's
// entries (segments created or removed), to the disk, unless SyncNever. A
// failure sets syncFailed.
func (s *Spool) syncWrites() {
	s.syncActive()
	if s.sync != SyncNever && s.dirDirty.Swap(false) {
		if err := syncDir(s.dir); err != nil {
			s.log.Error("sync spool directory failed", "error", err)
			s.syncFailed = true
		}
	}
}

// syncActive forces the active segment's writes to the disk, unless
// SyncNever.
func (s *Spool) syncActive() {
	if s.sync == SyncNever || s.active == nil || !s.dirty {
		return
	}
	if err := s.active.Sync(); err != nil {
		s.log.Error("sync segment failed", "error", err)
		s.syncFailed = true
	}
	s.dirty = false
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
