package spool

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
	"time"
)

// On disk the spool is a directory of append-only segment files named after
// the sequence number of their first record ("00000000000000000042.seg"),
// plus a "cursor" file holding the sequence number of the oldest unconfirmed
// record and one past the newest record ever published (to count resends as
// duplicates).
//
// Record:  u32 payload length | u32 CRC-32C of payload | payload
// Payload: i64 unix seconds received | u32 topic length | topic | body
//
// The checksum does not cover the length. A record whose length is damaged
// (and nothing else) is still found: its payload ends where the bytes after
// its header match its checksum and a record that verifies (or the end of
// the segment) starts. Two checksums agreeing by chance is not a risk worth
// counting (2^-64), and the record is then exactly one, so the sequence
// numbers of those after it stay right. Damage beyond the length leaves the
// rest of the segment unframed: records have no marker to search for, and
// not knowing how many were lost would shift the numbers the cursor holds.
const (
	recordHeaderBytes  = 8
	payloadHeaderBytes = 12
	segmentSuffix      = ".seg"
	cursorFile         = "cursor"
	// maxRecordBytes bounds one message (far above the relay's max_message_bytes)
	// so a corrupt length never makes the reader allocate gigabytes.
	maxRecordBytes = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type segment struct {
	firstSeq uint64
	count    uint64
	size     int64
}

func (g *segment) endSeq() uint64 { return g.firstSeq + g.count }

func segmentName(firstSeq uint64) string { return fmt.Sprintf("%020d%s", firstSeq, segmentSuffix) }

// load recovers the segments and the cursor left by a previous run, truncating
// a torn record at a segment's end.
func (s *Spool) load() error {
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
			s.log.Warn("ignoring file with a foreign name", "file", filepath.Join(s.dir, name))
			continue
		}
		firstSeqs = append(firstSeqs, seq)
	}
	sort.Slice(firstSeqs, func(i, j int) bool { return firstSeqs[i] < firstSeqs[j] })

	s.commitSeq, s.sentEnd, err = s.readCursor()
	if err != nil {
		return err
	}
	for i, first := range firstSeqs {
		g, cut, err := s.scanSegment(first)
		if err != nil {
			return err
		}
		// A cut segment stays while a later one exists, so that
		// reconcileSegments counts what the cut lost.
		keep := cut && i < len(firstSeqs)-1
		if !keep && (g.count == 0 || g.endSeq() <= s.commitSeq) {
			if err := os.Remove(filepath.Join(s.dir, segmentName(first))); err != nil {
				return fmt.Errorf("spool: remove confirmed segment: %w", err)
			}
			continue
		}
		s.segments = append(s.segments, g)
		s.totalBytes += g.size
	}
	s.reconcileSegments()
	s.nextSeq = s.commitSeq
	if n := len(s.segments); n > 0 {
		s.nextSeq = max(s.nextSeq, s.segments[n-1].endSeq())
		s.commitSeq = max(s.commitSeq, s.segments[0].firstSeq)
	}
	s.saved = [2]uint64{s.commitSeq, s.sentEnd}
	if len(s.segments) > 0 {
		s.log.Info("recovered unconfirmed messages", "dir", s.dir, "messages", s.nextSeq-s.commitSeq, "bytes", s.totalBytes)
	}
	return nil
}

// reconcileSegments makes the recovered segments' sequence numbers agree
// with their names: a segment miscounted after a damaged length is cut to
// where the next one starts, and records lost between segments (cut off by
// truncation) are counted as dropped.
func (s *Spool) reconcileSegments() {
	for i := 0; i+1 < len(s.segments); i++ {
		g, next := s.segments[i], s.segments[i+1].firstSeq
		if g.endSeq() > next {
			g.count = next - g.firstSeq
		}
		if from := max(g.endSeq(), s.commitSeq); from < next {
			s.events.Dropped(DropCorrupt, next-from)
			s.log.Warn("records lost to a damaged segment", "file", filepath.Join(s.dir, segmentName(g.firstSeq)), "messages", next-from)
		}
	}
}

// scanSegment counts the records of a segment. A damaged record stays
// counted (the reader skips it) when the records after it can still be
// framed; anything after a record that cannot be framed is cut off (a write
// torn by a crash, or damage beyond a record's length).
func (s *Spool) scanSegment(firstSeq uint64) (g *segment, cut bool, err error) {
	path := filepath.Join(s.dir, segmentName(firstSeq))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false, fmt.Errorf("spool: open %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("spool: stat %s: %w", path, err)
	}
	g = &segment{firstSeq: firstSeq}
	sf := newSegmentFile(f, 64<<10)
	sf.end = info.Size()
	damaged := 0
	for {
		err := sf.next(nil)
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errDamaged) {
			damaged++
			g.count++
			continue
		}
		if err != nil {
			// At least one record was torn (the rest of the file is one
			// record's bytes as far as its framing tells).
			s.events.Dropped(DropTorn, 1)
			s.log.Warn("truncating segment after its last whole record", "file", path, "offset", sf.off,
				"bytes_cut", sf.end-sf.off, "error", err)
			if err := f.Truncate(sf.off); err != nil {
				return nil, false, fmt.Errorf("spool: truncate %s: %w", path, err)
			}
			cut = true
			break
		}
		g.count++
	}
	g.size = sf.off
	if damaged > 0 {
		s.log.Warn("segment has damaged records; they will be skipped", "file", path, "records", damaged)
	}
	return g, cut, nil
}

// segmentFile reads a segment's records in order and knows where it is.
type segmentFile struct {
	f   *os.File
	br  *bufio.Reader
	off int64 // where the next record starts
	end int64 // bytes of the segment holding records
}

func newSegmentFile(f *os.File, bufSize int) *segmentFile {
	return &segmentFile{f: f, br: bufio.NewReaderSize(f, bufSize)}
}

// next reads the record at off, decoding it into a non-nil rec, and moves
// past it. It returns io.EOF at a clean end; errDamaged when the record
// fails its checks and was passed over (it counts as one record); another
// error when the rest of the segment cannot be framed.
func (sf *segmentFile) next(rec *Record) error {
	n, err := readRecord(sf.br, rec)
	if err == nil {
		sf.off += int64(n)
		return nil
	}
	if errors.Is(err, io.EOF) {
		return err
	}
	// Where its length says the next record starts; a record that cannot be
	// framed at all (n is 0) has no such place.
	byLength := sf.off + int64(n)
	if errors.Is(err, errDamaged) && (byLength == sf.end || verifiesAt(sf.f, byLength, sf.end)) {
		sf.off = byLength
		return err
	}
	if after, ok := resync(sf.f, sf.off, sf.end); ok {
		if err := sf.seek(after); err != nil {
			return err
		}
		return fmt.Errorf("%w: its length is damaged; the records after it start at offset %d", errDamaged, after)
	}
	if errors.Is(err, errDamaged) {
		// Its content is damaged, and so may be the next record: its
		// length is the only guess left.
		sf.off = byLength
	}
	return err
}

func (sf *segmentFile) seek(off int64) error {
	if _, err := sf.f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seek to %d: %w", off, err)
	}
	sf.br.Reset(sf.f)
	sf.off = off
	return nil
}

// resync finds where the record at off ends when only its length is
// damaged: the first offset up to which the bytes after its header match
// the checksum in it, and where a record that verifies (or the end) starts.
// It reads with ReadAt, leaving the file's offset alone.
func resync(f *os.File, off, end int64) (after int64, ok bool) {
	var hdr [recordHeaderBytes]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return 0, false
	}
	want := binary.LittleEndian.Uint32(hdr[4:8])
	start := off + recordHeaderBytes
	limit := min(end, start+maxRecordBytes)
	buf := make([]byte, 64<<10)
	var crc uint32
	for pos := start; pos < limit; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), limit-pos)], pos)
		if n == 0 && err != nil {
			return 0, false
		}
		for i := range n {
			crc = crc32.Update(crc, crcTable, buf[i:i+1])
			p := pos + int64(i) + 1
			if crc == want && p-start >= payloadHeaderBytes && (p == end || verifiesAt(f, p, end)) {
				return p, true
			}
		}
		pos += int64(n)
	}
	return 0, false
}

// verifiesAt reports whether a whole record that passes its checks starts
// at off and ends by end.
func verifiesAt(f *os.File, off, end int64) bool {
	var hdr [recordHeaderBytes]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return false
	}
	length := binary.LittleEndian.Uint32(hdr[0:4])
	if length < payloadHeaderBytes || length > maxRecordBytes || off+recordHeaderBytes+int64(length) > end {
		return false
	}
	payload := make([]byte, length)
	if _, err := f.ReadAt(payload, off+recordHeaderBytes); err != nil {
		return false
	}
	topicLen := binary.LittleEndian.Uint32(payload[8:12])
	return crc32.Checksum(payload, crcTable) == binary.LittleEndian.Uint32(hdr[4:8]) &&
		uint64(topicLen) <= uint64(length-payloadHeaderBytes)
}

// errDamaged is a record that can be framed (its length leads to the next
// one) but whose content is not what was written.
var errDamaged = errors.New("record damaged")

// readHeader reads a record header: io.EOF at a clean end, another error when
// the record cannot be framed.
func readHeader(br *bufio.Reader) (length, crc uint32, err error) {
	var hdr [recordHeaderBytes]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, 0, io.EOF
		}
		return 0, 0, fmt.Errorf("record header: %w", err)
	}
	length = binary.LittleEndian.Uint32(hdr[0:4])
	if length < payloadHeaderBytes || length > maxRecordBytes {
		return 0, 0, fmt.Errorf("record length %d out of range", length)
	}
	return length, binary.LittleEndian.Uint32(hdr[4:8]), nil
}

// readRecord reads one record; with a non-nil rec it also decodes it. It
// returns the record's size on disk, io.EOF at a clean end, errDamaged (with
// the size) for a record that fails its checks, another error for a record
// that cannot be framed.
func readRecord(br *bufio.Reader, rec *Record) (int, error) {
	length, crc, err := readHeader(br)
	if err != nil {
		return 0, err
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, fmt.Errorf("record payload: %w", err)
	}
	size := recordHeaderBytes + int(length)
	if crc32.Checksum(payload, crcTable) != crc {
		return size, fmt.Errorf("%w: checksum mismatch", errDamaged)
	}
	topicLen := binary.LittleEndian.Uint32(payload[8:12])
	if uint64(topicLen) > uint64(length-payloadHeaderBytes) {
		return size, fmt.Errorf("%w: topic length %d exceeds payload", errDamaged, topicLen)
	}
	if rec != nil {
		rec.Received = time.Unix(int64(binary.LittleEndian.Uint64(payload[0:8])), 0)
		rec.Topic = payload[payloadHeaderBytes : payloadHeaderBytes+topicLen]
		rec.Body = payload[payloadHeaderBytes+topicLen:]
	}
	return size, nil
}

// Cursor file: u64 commitSeq | u64 sentEnd | u32 CRC-32C of the 16 bytes before.
const cursorBytes = 20

func (s *Spool) readCursor() (commitSeq, sentEnd uint64, err error) {
	data, err := os.ReadFile(filepath.Join(s.dir, cursorFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("spool: read cursor: %w", err)
	}
	if len(data) != cursorBytes || crc32.Checksum(data[:16], crcTable) != binary.LittleEndian.Uint32(data[16:]) {
		// Starting from the oldest segment re-sends confirmed messages but loses none.
		s.log.Warn("cursor file is corrupt, resending from the oldest spooled message", "dir", s.dir)
		return 0, 0, nil
	}
	return binary.LittleEndian.Uint64(data[:8]), binary.LittleEndian.Uint64(data[8:16]), nil
}

func (s *Spool) saveCursor() error {
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
	if err := s.writeFile(tmp, data[:]); err != nil {
		return fmt.Errorf("spool: write cursor: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, cursorFile)); err != nil {
		return fmt.Errorf("spool: replace cursor: %w", err)
	}
	if s.sync != SyncNever {
		// A lost rename only resends confirmed messages; syncing keeps that short.
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("spool: sync directory: %w", err)
		}
	}
	s.saved = state
	return nil
}

// writeFile writes a new file, synced unless SyncNever, so that a rename
// never exposes an empty file after a host crash.
func (s *Spool) writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && s.sync != SyncNever {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
