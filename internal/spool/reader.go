package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Reader reads records in order, from any sequence number on.
type Reader struct {
	s     *Spool
	seq   uint64       // next record to return
	seg   *segmentFile // the open segment, nil if none
	first uint64       // first seq of the open segment
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
	if r.seg != nil {
		r.seg.f.Close()
		r.seg = nil
	}
}

// Next returns the next written record, or ok false when there is none yet.
// Its Topic and Body are valid until the next call. Damage never stops it: a
// record that fails its checks (its length included) is skipped, and so is
// the rest of a segment once a record cannot be framed (or the file cannot
// be opened); both are counted as DropCorrupt and logged at most once per
// damageLogInterval.
func (r *Reader) Next() (rec Record, ok bool) {
	for {
		first, end, size, found := r.s.segmentAt(r.seq)
		if !found {
			return Record{}, false
		}
		if r.seq < first {
			// The records in between were dropped (spool full) or lost to
			// corruption, and counted then.
			r.Close()
			r.seq = first
		}
		if r.seg == nil || r.first != first {
			if err := r.open(first, size); err != nil {
				r.skipTo(end, first, err)
				continue
			}
		}
		r.seg.end = size // the active segment grows
		rec.Seq = r.seq
		err := r.seg.next(&rec)
		switch {
		case err == nil:
			r.seq++
			return rec, true
		case errors.Is(err, errDamaged):
			r.s.damaged(first, r.seq, 1, err)
			r.seq++
		default:
			r.skipTo(end, first, err)
		}
	}
}

// skipTo gives up on the records of the segment starting at first from the
// reader's position to end.
func (r *Reader) skipTo(end, first uint64, err error) {
	r.s.damaged(first, r.seq, end-r.seq, err)
	r.Close()
	r.seq = end
}

// open opens the segment starting at first, of size bytes, and skips to
// r.seq: records already read, damaged ones included, were counted then.
func (r *Reader) open(first uint64, size int64) error {
	r.Close()
	path := filepath.Join(r.s.dir, segmentName(first))
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	r.seg, r.first = newSegmentFile(f, 256<<10), first
	r.seg.end = size
	for skip := r.seq - first; skip > 0; skip-- {
		if err := r.seg.next(nil); err != nil && !errors.Is(err, errDamaged) {
			r.Close()
			return fmt.Errorf("skip to record %d: %w", r.seq, err)
		}
	}
	return nil
}
