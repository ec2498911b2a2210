package spool

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
)

// Reader reads records in order, from any sequence number on.
type Reader struct {
	s     *Spool
	seq   uint64 // next record to return
	file  *os.File
	br    *bufio.Reader
	first uint64 // first seq of the open segment
}

// NewReader returns a reader positioned at sequence number 0; Seek moves it.
func (s *Spool) NewReader() *Reader { return &Reader{s: s} }

// Seek positions the reader at seq (or the oldest record after it still spooled).
func (r *Reader) Seek(seq uint64) {
	r.Close()
	r.seq = seq
}

// Pos is the sequence number of the next record Next looks for.
func (r *Reader) Pos() uint64 { return r.seq }

// Close closes the open segment file, if any; the reader stays usable.
func (r *Reader) Close() {
	if r.file != nil {
		r.file.Close()
		r.file, r.br = nil, nil
	}
}

// Next returns the next written record, or ok false when there is none yet.
// Its Topic and Body are valid until the next call. A damaged segment is
// skipped (reported as DropError) and returned as an error.
func (r *Reader) Next() (rec Record, ok bool, err error) {
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
		return Record{}, false, nil
	}
	if r.seq < gFirst {
		// The records in between were dropped (spool full) or lost to corruption.
		r.Close()
		r.seq = gFirst
	}
	if r.file == nil || r.first != gFirst {
		if err := r.open(gFirst); err != nil {
			return Record{}, false, err
		}
	}
	rec.Seq = r.seq
	if _, err := readRecord(r.br, &rec); err != nil {
		// Skip the rest of a damaged segment rather than stall the bridge.
		s.events.Dropped(DropError, gEnd-r.seq)
		err = fmt.Errorf("spool: read %s at record %d: %w (%d records skipped)", segmentName(gFirst), r.seq, err, gEnd-r.seq)
		r.Close()
		r.seq = gEnd
		return Record{}, false, err
	}
	r.seq++
	return rec, true, nil
}

// open opens the segment starting at first and skips to r.seq.
func (r *Reader) open(first uint64) error {
	r.Close()
	path := filepath.Join(r.s.dir, segmentName(first))
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("spool: open %s: %w", path, err)
	}
	r.file, r.br, r.first = f, bufio.NewReaderSize(f, 256<<10), first
	for skip := r.seq - first; skip > 0; skip-- {
		if _, err := readRecord(r.br, nil); err != nil {
			r.Close()
			return fmt.Errorf("spool: skip in %s: %w", path, err)
		}
	}
	return nil
}
