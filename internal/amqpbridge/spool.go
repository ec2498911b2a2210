package amqpbridge

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The spool is a directory of append-only segment files named after the
// sequence number of their first record ("00000000000000000042.seg"), plus a
// "cursor" file holding the sequence number of the oldest unconfirmed record
// and one past the newest record ever published (to count resends as duplicates).
//
// Record:  u32 payload length | u32 CRC-32C of payload | payload
// Payload: i64 unix seconds received | u32 topic length | topic | body
//
// Lock order: pendingMu and mu are never held together.
const (
	recordHeaderBytes  = 8
	payloadHeaderBytes = 12
	segmentSuffix      = ".seg"
	cursorFile         = "cursor"
	maxSegmentBytes    = 16 << 20
	// pendingLimit bounds the in-memory buffer between Enqueue and the spool
	// writer; it only fills if the disk stalls.
	pendingLimit = 16 << 20
	// maxRecordBytes bounds one message (far above the relay's max_message_bytes)
	// so a corrupt length never makes the reader allocate gigabytes.
	maxRecordBytes      = 64 << 20
	initialPendingBytes = 1 << 20
	// cursorSaveInterval bounds how many confirmed messages a crash re-sends.
	cursorSaveInterval = time.Second
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one spooled message.
type record struct {
	seq      uint64
	received time.Time
	topic    []byte
	body     []byte
}

type segment struct {
	firstSeq uint64
	count    uint64
	size     int64
}

func (g *segment) endSeq() uint64 { return g.firstSeq + g.count }

func segmentName(firstSeq uint64) string { return fmt.Sprintf("%020d%s", firstSeq, segmentSuffix) }

// spoolEvents receives what the spool drops, for metrics.
type spoolEvents struct {
	appended func(n int)
	dropped  func(reason string, n uint64)
}

type spool struct {
	dir          string
	maxBytes     int64
	segmentBytes int64
	log          hclog.Logger
	events       spoolEvents

	// Filled by append (the relay's hot path), drained by the writer goroutine.
	pendingMu      sync.Mutex
	pending        []byte
	pendingRecords int
	closed         bool
	wake           chan struct{} // cap 1: pending has data

	// Owned by the writer goroutine.
	spare  []byte
	active *os.File // last segment, open for append

	mu         sync.Mutex
	segments   []*segment // oldest first; the last one is active
	totalBytes int64
	nextSeq    uint64        // sequence number of the next record written
	commitSeq  uint64        // oldest record not yet confirmed
	sentEnd    uint64        // one past the newest record ever published
	saved      [2]uint64     // commitSeq and sentEnd as last written to the cursor file
	readable   chan struct{} // cap 1: records were written or dropped

	flushed chan chan struct{} // flush requests to the writer
	stop    chan struct{}
	stopped chan struct{}
}

func openSpool(dir string, maxBytes int64, log hclog.Logger, events spoolEvents) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	s := &spool{
		dir:          dir,
		maxBytes:     maxBytes,
		segmentBytes: min(max(maxBytes/16, 4<<10), maxSegmentBytes),
		log:          log,
		events:       events,
		wake:         make(chan struct{}, 1),
		// Start both buffers big enough that Enqueue rarely grows one.
		pending:  make([]byte, 0, initialPendingBytes),
		spare:    make([]byte, 0, initialPendingBytes),
		readable: make(chan struct{}, 1),
		flushed:  make(chan chan struct{}),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	go s.runWriter()
	return s, nil
}

// load recovers the segments and the cursor left by a previous run, truncating
// a torn record at a segment's end.
func (s *spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", s.dir, err)
	}
	var firstSeqs []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		if err != nil {
			s.log.Warn("spool: ignoring file with a foreign name", "file", filepath.Join(s.dir, name))
			continue
		}
		firstSeqs = append(firstSeqs, seq)
	}
	sort.Slice(firstSeqs, func(i, j int) bool { return firstSeqs[i] < firstSeqs[j] })

	s.commitSeq, s.sentEnd, err = s.readCursor()
	if err != nil {
		return err
	}
	for _, first := range firstSeqs {
		g, err := s.scanSegment(first)
		if err != nil {
			return err
		}
		if g.count == 0 || g.endSeq() <= s.commitSeq {
			if err := os.Remove(filepath.Join(s.dir, segmentName(first))); err != nil {
				return fmt.Errorf("spool: remove confirmed segment: %w", err)
			}
			continue
		}
		s.segments = append(s.segments, g)
		s.totalBytes += g.size
	}
	s.nextSeq = s.commitSeq
	if n := len(s.segments); n > 0 {
		s.nextSeq = max(s.nextSeq, s.segments[n-1].endSeq())
		s.commitSeq = max(s.commitSeq, s.segments[0].firstSeq)
	}
	s.saved = [2]uint64{s.commitSeq, s.sentEnd}
	if len(s.segments) > 0 {
		s.log.Info("spool: recovered unconfirmed messages", "dir", s.dir, "messages", s.nextSeq-s.commitSeq, "bytes", s.totalBytes)
	}
	return nil
}

// scanSegment counts the valid records of a segment and cuts off anything
// after the first invalid one (a write torn by a crash).
func (s *spool) scanSegment(firstSeq uint64) (*segment, error) {
	path := filepath.Join(s.dir, segmentName(firstSeq))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	defer f.Close()
	g := &segment{firstSeq: firstSeq}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		n, err := readRecord(br, nil)
		if errors.Is(err, io.EOF) {
			return g, nil
		}
		if err != nil {
			s.log.Warn("spool: truncating segment after its last valid record", "file", path, "offset", g.size, "error", err)
			if err := f.Truncate(g.size); err != nil {
				return nil, fmt.Errorf("spool: truncate %s: %w", path, err)
			}
			return g, nil
		}
		g.count++
		g.size += int64(n)
	}
}

// readRecord reads one record; with a non-nil rec it also decodes it. It
// returns the record's size on disk, io.EOF at a clean end, another error for
// a torn or corrupt record.
func readRecord(br *bufio.Reader, rec *record) (int, error) {
	var hdr [recordHeaderBytes]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("record header: %w", err)
	}
	length := binary.LittleEndian.Uint32(hdr[0:4])
	if length < payloadHeaderBytes || length > maxRecordBytes {
		return 0, fmt.Errorf("record length %d out of range", length)
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, fmt.Errorf("record payload: %w", err)
	}
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:8]) {
		return 0, errors.New("record checksum mismatch")
	}
	topicLen := binary.LittleEndian.Uint32(payload[8:12])
	if uint64(topicLen) > uint64(length-payloadHeaderBytes) {
		return 0, fmt.Errorf("record topic length %d exceeds payload", topicLen)
	}
	if rec != nil {
		rec.received = time.Unix(int64(binary.LittleEndian.Uint64(payload[0:8])), 0)
		rec.topic = payload[payloadHeaderBytes : payloadHeaderBytes+topicLen]
		rec.body = payload[payloadHeaderBytes+topicLen:]
	}
	return recordHeaderBytes + int(length), nil
}

// Cursor file: u64 commitSeq | u64 sentEnd | u32 CRC-32C of the 16 bytes before.
const cursorBytes = 20

func (s *spool) readCursor() (commitSeq, sentEnd uint64, err error) {
	data, err := os.ReadFile(filepath.Join(s.dir, cursorFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("spool: read cursor: %w", err)
	}
	if len(data) != cursorBytes || crc32.Checksum(data[:16], crcTable) != binary.LittleEndian.Uint32(data[16:]) {
		// Starting from the oldest segment re-sends confirmed messages but loses none.
		s.log.Warn("spool: cursor file is corrupt, resending from the oldest spooled message", "dir", s.dir)
		return 0, 0, nil
	}
	return binary.LittleEndian.Uint64(data[:8]), binary.LittleEndian.Uint64(data[8:16]), nil
}

func (s *spool) saveCursor() error {
	s.mu.Lock()
	state := [2]uint64{s.commitSeq, s.sentEnd}
	s.mu.Unlock()
	if state == s.saved {
		return nil
	}
	var data [cursorBytes]byte
	binary.LittleEndian.PutUint64(data[:8], state[0])
	binary.LittleEndian.PutUint64(data[8:16], state[1])
	binary.LittleEndian.PutUint32(data[16:], crc32.Checksum(data[:16], crcTable))
	tmp := filepath.Join(s.dir, cursorFile+".tmp")
	if err := os.WriteFile(tmp, data[:], 0o640); err != nil {
		return fmt.Errorf("spool: write cursor: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, cursorFile)); err != nil {
		return fmt.Errorf("spool: replace cursor: %w", err)
	}
	s.saved = state
	return nil
}

// append copies a batch of messages into the pending buffer under one lock,
// all stamped with received. It never waits for the disk or the broker; what
// it has to drop it reports through events. It returns how many it kept.
func (s *spool) append(topics, bodies [][]byte, received time.Time) int {
	unix := uint64(received.Unix())
	var kept, tooBig, noRoom uint64
	s.pendingMu.Lock()
	if s.closed {
		s.pendingMu.Unlock()
		s.events.dropped(dropClosed, uint64(len(topics)))
		return 0
	}
	// Only the first record of a batch wakes the writer, which takes them all.
	wake := len(s.pending) == 0
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
		}
		// The writer fills in the CRC, keeping the checksum work off this path.
		s.pending = binary.LittleEndian.AppendUint32(s.pending, uint32(size-recordHeaderBytes))
		s.pending = binary.LittleEndian.AppendUint32(s.pending, 0)
		s.pending = binary.LittleEndian.AppendUint64(s.pending, unix)
		s.pending = binary.LittleEndian.AppendUint32(s.pending, uint32(len(topic)))
		s.pending = append(s.pending, topic...)
		s.pending = append(s.pending, body...)
		kept++
	}
	s.pendingRecords += int(kept)
	s.pendingMu.Unlock()
	if tooBig > 0 {
		s.events.dropped(dropInvalid, tooBig)
	}
	if noRoom > 0 {
		s.events.dropped(dropBufferFull, noRoom)
	}
	if wake && kept > 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return int(kept)
}

func (s *spool) runWriter() {
	defer close(s.stopped)
	ticker := time.NewTicker(cursorSaveInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.wake:
			s.flushPending()
		case done := <-s.flushed:
			s.flushPending()
			close(done)
		case <-ticker.C:
			if err := s.saveCursor(); err != nil {
				s.log.Error("spool: saving cursor failed", "error", err)
			}
		case <-s.stop:
			return
		}
	}
}

// flush waits until the writer wrote everything appended before the call.
func (s *spool) flush() {
	done := make(chan struct{})
	select {
	case s.flushed <- done:
		<-done
	case <-s.stopped:
	}
}

// flushPending moves the pending buffer to the segment files.
func (s *spool) flushPending() {
	s.pendingMu.Lock()
	batch, records := s.pending, s.pendingRecords
	s.pending, s.pendingRecords = s.spare[:0], 0
	s.pendingMu.Unlock()
	// Keep the buffer's capacity for the next swap: Enqueue then never grows it.
	s.spare = batch[:0]
	if records == 0 {
		return
	}
	for len(batch) > 0 {
		n, count := s.fillSegment(batch)
		if err := s.writeActive(batch[:n], count); err != nil {
			s.log.Error("spool: write failed, dropping messages", "dir", s.dir, "messages", count, "error", err)
			s.events.dropped(dropSpoolError, uint64(count))
		}
		batch = batch[n:]
	}
	s.events.appended(records)
	select {
	case s.readable <- struct{}{}:
	default:
	}
}

// fillSegment sets the CRC of the leading records of batch that fit in the
// active segment (at least one) and returns their byte length and count.
func (s *spool) fillSegment(batch []byte) (n, count int) {
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

func (s *spool) activeSegment() *segment {
	if s.active == nil || len(s.segments) == 0 {
		return nil
	}
	return s.segments[len(s.segments)-1]
}

// writeActive appends count records to the active segment, starting a new
// segment when they would not fit, then enforces the size limit.
func (s *spool) writeActive(data []byte, count int) error {
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
func (s *spool) rotate() error {
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
	s.mu.Lock()
	s.segments = append(s.segments, &segment{firstSeq: first})
	s.mu.Unlock()
	return nil
}

func (s *spool) closeActive() {
	if s.active == nil {
		return
	}
	if err := s.active.Close(); err != nil {
		s.log.Error("spool: close segment failed", "error", err)
	}
	s.active = nil
}

// dropOldestLocked removes the oldest segments while the spool is over its
// limit, counting their unconfirmed records as dropped. The active segment stays.
func (s *spool) dropOldestLocked() {
	for s.totalBytes > s.maxBytes && len(s.segments) > 1 {
		g := s.segments[0]
		if lost := g.endSeq() - max(g.firstSeq, min(s.commitSeq, g.endSeq())); lost > 0 {
			s.events.dropped(dropSpoolFull, lost)
			s.log.Warn("spool: full, dropped the oldest unconfirmed messages", "dir", s.dir, "messages", lost, "max_bytes", s.maxBytes)
		}
		s.removeSegmentLocked()
		s.commitSeq = max(s.commitSeq, s.segments[0].firstSeq)
	}
}

func (s *spool) removeSegmentLocked() {
	g := s.segments[0]
	if err := os.Remove(filepath.Join(s.dir, segmentName(g.firstSeq))); err != nil {
		s.log.Error("spool: remove segment failed", "error", err)
	}
	s.totalBytes -= g.size
	s.segments = s.segments[1:]
}

// commit records that every record before seq is confirmed, and that records
// before sentEnd were published; it deletes the segments that hold only
// confirmed records (except the active one).
func (s *spool) commit(seq, sentEnd uint64) {
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

// cursor returns the oldest unconfirmed record and one past the newest
// record ever published.
func (s *spool) cursor() (commitSeq, sentEnd uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commitSeq, s.sentEnd
}

// state returns the records not yet confirmed and the spool's size on disk.
func (s *spool) state() (unconfirmed uint64, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq - s.commitSeq, s.totalBytes
}

// close flushes what Enqueue handed over and saves the cursor. Enqueue calls
// after close drop their messages.
func (s *spool) close() error {
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
	// The page cache survives a relay restart; sync for a host reboot too.
	if s.active != nil {
		if err := s.active.Sync(); err != nil {
			s.log.Error("spool: sync segment failed", "error", err)
		}
	}
	s.closeActive()
	return s.saveCursor()
}

// spoolReader reads records in order, from any sequence number on.
type spoolReader struct {
	s     *spool
	seq   uint64 // next record to return
	file  *os.File
	br    *bufio.Reader
	first uint64 // first seq of the open segment
}

func (s *spool) newReader() *spoolReader { return &spoolReader{s: s} }

// seek positions the reader at seq (or the oldest record after it still spooled).
func (r *spoolReader) seek(seq uint64) {
	r.closeFile()
	r.seq = seq
}

func (r *spoolReader) closeFile() {
	if r.file != nil {
		r.file.Close()
		r.file, r.br = nil, nil
	}
}

// next returns the next written record, or ok false when there is none yet.
func (r *spoolReader) next() (rec record, ok bool, err error) {
	s := r.s
	s.mu.Lock()
	var g *segment
	for _, cand := range s.segments {
		if cand.endSeq() > r.seq {
			g = cand
			break
		}
	}
	var gFirst, gEnd uint64
	if g != nil {
		gFirst, gEnd = g.firstSeq, g.endSeq()
	}
	s.mu.Unlock()
	if g == nil {
		return record{}, false, nil
	}
	if r.seq < gFirst {
		// The records in between were dropped (spool full) or lost to corruption.
		r.closeFile()
		r.seq = gFirst
	}
	if r.file == nil || r.first != gFirst {
		if err := r.open(gFirst); err != nil {
			return record{}, false, err
		}
	}
	rec.seq = r.seq
	if _, err := readRecord(r.br, &rec); err != nil {
		// Skip the rest of a damaged segment rather than stall the bridge.
		s.events.dropped(dropSpoolError, gEnd-r.seq)
		err = fmt.Errorf("spool: read %s at record %d: %w (%d records skipped)", segmentName(gFirst), r.seq, err, gEnd-r.seq)
		r.closeFile()
		r.seq = gEnd
		return record{}, false, err
	}
	r.seq++
	return rec, true, nil
}

// open opens the segment starting at first and skips to r.seq.
func (r *spoolReader) open(first uint64) error {
	r.closeFile()
	path := filepath.Join(r.s.dir, segmentName(first))
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("spool: open %s: %w", path, err)
	}
	r.file, r.br, r.first = f, bufio.NewReaderSize(f, 256<<10), first
	for skip := r.seq - first; skip > 0; skip-- {
		if _, err := readRecord(r.br, nil); err != nil {
			r.closeFile()
			return fmt.Errorf("spool: skip in %s: %w", path, err)
		}
	}
	return nil
}
