package spool

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/logging/logtest"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
)

func testSpool(t *testing.T, dir string, maxBytes int64) (*Spool, map[string]uint64) {
	t.Helper()
	dropped := map[string]uint64{}
	s, err := Open(Options{Dir: dir, MaxBytes: maxBytes, Log: logtest.ForTest(t), Events: Events{
		Appended: func(int) {},
		Dropped:  func(reason string, n uint64) { dropped[reason] += n },
	}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, dropped
}

// appendOne appends a confirmed batch of one, waits until it is durable and
// reports whether it was kept.
func (s *Spool) appendOne(topic, body []byte, received time.Time) bool {
	kept, written := s.Append([][]byte{topic}, [][]byte{body}, received, true)
	<-written.Done()
	return kept == 1 && written.Failed() == ""
}

// waitWritten waits until the writer has written records up to seq.
func waitWritten(t *testing.T, s *Spool, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		next := s.nextSeq
		s.mu.Unlock()
		if next >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer wrote up to %d, want %d", next, seq)
		}
		time.Sleep(time.Millisecond)
	}
}

// readAll returns the bodies readable from seq on.
func readAll(t *testing.T, s *Spool, seq uint64) []string {
	t.Helper()
	r := s.NewReader()
	defer r.Close()
	r.Seek(seq)
	var bodies []string
	for {
		rec, ok := r.Next()
		if !ok {
			return bodies
		}
		bodies = append(bodies, string(rec.Body))
	}
}

func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if len(segs) == 0 {
		t.Fatal("no segment files")
	}
	sort.Strings(segs)
	return segs[len(segs)-1]
}

func appendFile(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolRecovery writes messages, confirms some, closes the spool, damages
// its files as a crash or a bad disk would, and checks what a reopened spool
// resends: every unconfirmed message, in order, and nothing made up.
func TestSpoolRecovery(t *testing.T) {
	badCRC := binary.LittleEndian.AppendUint32(nil, 20)
	badCRC = binary.LittleEndian.AppendUint32(badCRC, 12345)
	badCRC = append(badCRC, make([]byte, 20)...)
	tests := []struct {
		name        string
		damage      func(t *testing.T, dir string)
		wantFromSeq uint64 // first message resent
		wantTorn    uint64 // records counted DropTorn at recovery
	}{
		{"clean", func(*testing.T, string) {}, 30, 0},
		{"torn header", func(t *testing.T, dir string) { appendFile(t, lastSegment(t, dir), []byte{1, 2, 3}) }, 30, 1},
		{"torn payload", func(t *testing.T, dir string) {
			appendFile(t, lastSegment(t, dir), []byte{100, 0, 0, 0, 0, 0, 0, 0, 1, 2})
		}, 30, 1},
		{"bad checksum", func(t *testing.T, dir string) { appendFile(t, lastSegment(t, dir), badCRC) }, 30, 0},
		{"corrupt cursor", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, cursorFile), []byte("garbage"), 0o640); err != nil {
				t.Fatal(err)
			}
		}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := testSpool(t, dir, 1<<20)
			for i := range 100 {
				s.appendOne([]byte("t"), fmt.Appendf(nil, "m%03d", i), time.Now())
			}
			waitWritten(t, s, 100)
			s.Commit(30, 50)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, dir)

			s, dropped := testSpool(t, dir, 1<<20)
			defer s.Close()
			if dropped[DropTorn] != tt.wantTorn {
				t.Errorf("%s: recovery counted %d torn records, want %d (%v)", tt.name, dropped[DropTorn], tt.wantTorn, dropped)
			}
			commit, sentEnd := s.Cursor()
			got := readAll(t, s, commit)
			var want []string
			for i := tt.wantFromSeq; i < 100; i++ {
				want = append(want, fmt.Sprintf("m%03d", i))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: after reopen got %d messages %v, want %v", tt.name, len(got), got, want)
			}
			if wantSent := map[bool]uint64{true: 0, false: 50}[tt.name == "corrupt cursor"]; sentEnd != wantSent {
				t.Errorf("%s: sentEnd %d, want %d", tt.name, sentEnd, wantSent)
			}
			// New messages continue the sequence after the recovered ones.
			s.appendOne([]byte("t"), []byte("new"), time.Now())
			waitWritten(t, s, 101)
			if got := readAll(t, s, 100); fmt.Sprint(got) != "[new]" {
				t.Errorf("%s: message after reopen read as %v", tt.name, got)
			}
		})
	}
}

// TestSpoolConfirmedSegmentsRemoved checks that confirmed segments leave the
// disk and that the size gauge follows.
func TestSpoolConfirmedSegmentsRemoved(t *testing.T) {
	dir := t.TempDir()
	s, dropped := testSpool(t, dir, 64<<10)
	defer s.Close()
	for i := range 2000 {
		s.appendOne([]byte("t"), fmt.Appendf(nil, "m%04d", i), time.Now())
		if i%100 == 99 {
			waitWritten(t, s, uint64(i+1))
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if len(segs) < 3 {
		t.Fatalf("%d segments for 2000 records, want several", len(segs))
	}
	if len(dropped) != 0 {
		t.Fatalf("dropped %v below the size limit", dropped)
	}
	s.Commit(2000, 2000)
	segs, _ = filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	unconfirmed, bytes := s.State()
	if len(segs) != 1 || unconfirmed != 0 {
		t.Fatalf("after confirming everything: %d segment files, %d unconfirmed (%d bytes), want only the active segment", len(segs), unconfirmed, bytes)
	}
}

// seedSegment is the segment file a fresh spool writes with what add
// appends, a fuzz seed.
func seedSegment(f *testing.F, add func(*Spool)) []byte {
	dir := f.TempDir()
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Log: hclog.NewNullLogger(), Events: Events{Appended: func(int) {}, Dropped: func(string, uint64) {}}})
	if err != nil {
		f.Fatal(err)
	}
	add(s)
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	seg, err := os.ReadFile(lastSegment(f, dir))
	if err != nil {
		f.Fatal(err)
	}
	return seg
}

// FuzzReadRecord feeds arbitrary segment bytes to the record reader: it must
// never panic, and whatever it accepts must re-encode to the same bytes.
func FuzzReadRecord(f *testing.F) {
	seg := seedSegment(f, func(s *Spool) {
		s.appendOne([]byte("org.fedoraproject.prod.git.receive"), []byte(`{"msg": {"a": 1}}`), time.Unix(1700000000, 0))
		s.appendOne([]byte("t"), nil, time.Unix(0, 0))
	})
	f.Add(seg)
	f.Add(seg[:len(seg)-3])  // torn payload
	f.Add(seg[:5])           // torn header
	f.Add(append(seg, 0xff)) // trailing garbage
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		offset := 0
		for {
			var rec Record
			n, err := readRecord(br, &rec)
			if err != nil {
				return
			}
			var again []byte
			again = binary.LittleEndian.AppendUint32(again, uint32(n-recordHeaderBytes))
			again = binary.LittleEndian.AppendUint32(again, 0)
			again = binary.LittleEndian.AppendUint64(again, uint64(rec.Received.Unix()))
			again = binary.LittleEndian.AppendUint32(again, uint32(len(rec.Topic)))
			again = append(append(again, rec.Topic...), rec.Body...)
			binary.LittleEndian.PutUint32(again[4:8], crc32.Checksum(again[recordHeaderBytes:], crcTable))
			if !bytes.Equal(again, data[offset:offset+n]) {
				t.Fatalf("record at %d re-encodes as %x, read from %x", offset, again, data[offset:offset+n])
			}
			offset += n
		}
	})
}

// TestSpoolConcurrentAppend appends from several goroutines at once (the relay
// may publish from more than one) and reads everything back: nothing lost,
// each goroutine's messages in its order.
func TestSpoolConcurrentAppend(t *testing.T) {
	s, dropped := testSpool(t, t.TempDir(), 64<<20)
	defer s.Close()
	const writers, each = 4, 5000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if !s.appendOne([]byte("t"), fmt.Appendf(nil, "%d %d", w, i), time.Now()) {
					t.Errorf("append dropped writer %d's message %d", w, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitWritten(t, s, writers*each)
	next := make([]int, writers)
	for _, body := range readAll(t, s, 0) {
		var w, i int
		if _, err := fmt.Sscan(body, &w, &i); err != nil || i != next[w] {
			t.Fatalf("read %q, want writer %d message %d next (%v)", body, w, next[w], err)
		}
		next[w]++
	}
	for w, n := range next {
		if n != each {
			t.Errorf("writer %d: read %d messages, want %d (dropped %v)", w, n, each, dropped)
		}
	}
}

// recordBytes is the size on disk of the records damageSpool writes.
const recordBytes = recordHeaderBytes + payloadHeaderBytes + 1 + 6 // topic "t", body "m00000"

// damageSpool writes total records of recordBytes into segments of 16 records
// (the segment size is a sixteenth of MaxBytes, at least 4 KiB) and returns
// the spool and its drop counts.
func damageSpool(t *testing.T, dir string, total int) (*Spool, map[string]uint64) {
	t.Helper()
	s, dropped := testSpool(t, dir, 64<<10)
	s.segmentBytes = 16 * recordBytes // before the first Append wakes the writer
	for i := range total {
		s.appendOne([]byte("t"), fmt.Appendf(nil, "m%05d", i), time.Now())
		waitWritten(t, s, uint64(i+1)) // one record per write: exact segment sizes
	}
	return s, dropped
}

// editSegment changes the segment file starting at first: damage gets its
// bytes and returns what to write back.
func editSegment(t *testing.T, dir string, first uint64, damage func([]byte) []byte) {
	t.Helper()
	path := filepath.Join(dir, segmentName(first))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, damage(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

// flip inverts one byte of record seq (of the segment starting at first), at
// offset within the record: 0-3 is its length, 8 on its payload.
func flip(seq, first uint64, offset int) func([]byte) []byte {
	return func(data []byte) []byte {
		data[int64(seq-first)*recordBytes+int64(offset)] ^= 0xff
		return data
	}
}

func bodies(from, to int, except ...int) []string {
	var want []string
	for i := from; i < to; i++ {
		if !slices.Contains(except, i) {
			want = append(want, fmt.Sprintf("m%05d", i))
		}
	}
	return want
}

// TestSpoolDamage damages segments around a reader's position (record 40, in
// the segment of records 32-47) the way a bad disk or a crash does, and
// checks that the reader returns every intact record it can still find, in
// order (past a record whose length alone is damaged, too), counts the
// others as DropCorrupt, and never stalls; then that a reopened spool
// recovers the same records.
func TestSpoolDamage(t *testing.T) {
	const total, pos = 80, 40
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string // read from pos on
	}{
		{"payload flipped before the position", func(t *testing.T, dir string) { editSegment(t, dir, 32, flip(35, 32, 20)) },
			bodies(pos, total)},
		{"payloads of neighbours flipped", func(t *testing.T, dir string) {
			editSegment(t, dir, 48, flip(50, 48, 20))
			editSegment(t, dir, 48, flip(51, 48, 20))
		}, bodies(pos, total, 50, 51)},
		{"length flipped before the position", func(t *testing.T, dir string) { editSegment(t, dir, 32, flip(35, 32, 3)) },
			bodies(pos, total)},
		{"payload flipped after the position", func(t *testing.T, dir string) {
			editSegment(t, dir, 32, flip(42, 32, 20))
			editSegment(t, dir, 64, flip(70, 64, 9))
		}, bodies(pos, total, 42, 70)},
		{"length flipped after the position", func(t *testing.T, dir string) { editSegment(t, dir, 48, flip(50, 48, 3)) },
			bodies(pos, total, 50)},
		{"length flipped to another in range", func(t *testing.T, dir string) { editSegment(t, dir, 48, flip(50, 48, 0)) },
			bodies(pos, total, 50)},
		{"two lengths flipped in a segment", func(t *testing.T, dir string) {
			editSegment(t, dir, 48, flip(50, 48, 3))
			editSegment(t, dir, 48, flip(55, 48, 1))
		}, bodies(pos, total, 50, 55)},
		{"the last record's length flipped", func(t *testing.T, dir string) { editSegment(t, dir, 64, flip(79, 64, 3)) },
			bodies(pos, total, 79)},
		// The rest of the segment cannot be framed with certainty: given up.
		{"length and payload flipped", func(t *testing.T, dir string) {
			editSegment(t, dir, 48, flip(50, 48, 3))
			editSegment(t, dir, 48, flip(50, 48, 20))
		}, append(bodies(pos, 50), bodies(64, total)...)},
		{"segment tail truncated", func(t *testing.T, dir string) {
			editSegment(t, dir, 48, func(data []byte) []byte { return data[:5*recordBytes+7] })
		}, append(bodies(pos, 53), bodies(64, total)...)},
		{"segment missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, segmentName(48))); err != nil {
				t.Fatal(err)
			}
		}, append(bodies(pos, 48), bodies(64, total)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, dropped := damageSpool(t, dir, total)
			s.Commit(pos, pos)
			tt.damage(t, dir)
			lost := uint64(total - pos - len(tt.want))

			got := readAll(t, s, pos)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("read %v, want %v", got, tt.want)
			}
			if dropped[DropCorrupt] != lost {
				t.Errorf("counted %d corrupt records, want %d (%v)", dropped[DropCorrupt], lost, dropped)
			}
			// The reader moved on: later records are read.
			s.appendOne([]byte("t"), []byte("after"), time.Now())
			waitWritten(t, s, total+1)
			if got := readAll(t, s, total); fmt.Sprint(got) != "[after]" {
				t.Errorf("after the damage read %v, want [after]", got)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			// Recovery keeps the intact records after damage in the middle of
			// a segment, and counts what it cannot find.
			s, dropped = testSpool(t, dir, 64<<10)
			defer s.Close()
			if got := readAll(t, s, pos); fmt.Sprint(got) != fmt.Sprint(append(tt.want, "after")) {
				t.Fatalf("after reopening read %v, want %v", got, append(tt.want, "after"))
			}
			if dropped[DropCorrupt] != lost {
				t.Errorf("after reopening counted %d corrupt records, want %d (%v)", dropped[DropCorrupt], lost, dropped)
			}
		})
	}
}

// TestAppendWritten checks that a confirmed batch is in its segment file
// when its Completion completes: the relay answers "ok" then, and a killed
// process (whose page cache outlives it) must still have every record it
// answered for.
func TestAppendWritten(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNever} {
		dir := t.TempDir()
		s := openWithPolicy(t, dir, policy)
		for i := range 50 {
			body := fmt.Appendf(nil, "policy %d message %d", policy, i)
			if !s.appendOne([]byte("t"), body, time.Now()) {
				t.Fatalf("policy %d: message %d not kept", policy, i)
			}
			data, err := os.ReadFile(lastSegment(t, dir))
			if err != nil || !bytes.HasSuffix(data, body) {
				t.Fatalf("policy %d: message %d not in the segment file when its Completion completed (%v)", policy, i, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAppendChargesBudget checks the hand-off's use of the relay's shared
// byte budget: with no room (another holder took it) Append drops and
// counts, with room for part of a batch it keeps that part, once the room
// is back it accepts again, and every byte it charged is given back once
// the writer wrote it.
func TestAppendChargesBudget(t *testing.T) {
	budget := membudget.New(64 << 10)
	var mu sync.Mutex
	dropped := map[string]uint64{}
	s, err := Open(Options{Dir: t.TempDir(), MaxBytes: 1 << 20, Log: logtest.ForTest(t), Budget: budget, Events: Events{
		Appended: func(int) {},
		Dropped: func(reason string, n uint64) {
			mu.Lock()
			defer mu.Unlock()
			dropped[reason] += n
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	batch := func(n int) (topics, bodies [][]byte) {
		for i := range n {
			topics, bodies = append(topics, []byte("t")), append(bodies, fmt.Appendf(nil, "m%05d", i))
		}
		return topics, bodies
	}
	drops := func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return dropped[DropBudget]
	}
	waitReleased := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for budget.Used() != want {
			if time.Now().After(deadline) {
				t.Fatalf("budget holds %d bytes, want %d once the writer wrote everything", budget.Used(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// Another holder (inbound producers, say) took the whole budget.
	if !budget.Reserve(budget.Limit()) {
		t.Fatal("reserve the whole budget")
	}
	// It is asked to give room back for the hand-offs to come (inbound
	// evicts stalled peers); Append does not wait for it.
	var asked atomic.Int64
	budget.SetReclaimer(func(need int64) bool { asked.Add(need); return false })
	topics, bodies := batch(10)
	if kept, _ := s.Append(topics, bodies, time.Now(), false); kept != 0 || drops() != 10 {
		t.Fatalf("budget full: kept %d, %d dropped as %q; want 0 and 10", kept, drops(), DropBudget)
	}
	if asked.Load() < 10*recordBytes {
		t.Fatalf("budget full: reclaim asked for %d bytes, want at least the batch's %d", asked.Load(), 10*recordBytes)
	}
	// Room for three records of the next batch.
	budget.Release(3 * recordBytes)
	if kept, _ := s.Append(topics, bodies, time.Now(), false); kept != 3 || drops() != 17 {
		t.Fatalf("room for 3: kept %d, %d dropped; want 3 and 17", kept, drops())
	}
	// A confirmed batch is kept whole or not at all.
	if kept, written := s.Append(topics, bodies, time.Now(), true); kept != 0 || drops() != 27 || written.Failed() != DropBudget {
		t.Fatalf("room for 0 of a confirmed batch: kept %d, %d dropped, failed %q; want 0, 27, %q", kept, drops(), written.Failed(), DropBudget)
	}
	waitReleased(budget.Limit() - 3*recordBytes)
	// The other holder let go: whole batches are taken again.
	budget.Release(budget.Limit() - 3*recordBytes)
	for range 100 {
		if kept, _ := s.Append(topics, bodies, time.Now(), false); kept != 10 {
			t.Fatalf("budget free: kept %d of 10", kept)
		}
	}
	waitWritten(t, s, 3+100*10)
	waitReleased(0)
	if got := readAll(t, s, 0); len(got) != 3+1000 {
		t.Errorf("read %d records, want %d", len(got), 3+1000)
	}
	if drops() != 27 || len(dropped) != 1 {
		t.Errorf("dropped %v, want only the 27 over budget", dropped)
	}
}

// FuzzSegmentFile feeds arbitrary segment files to the framing the reader
// and recovery share: it must never panic, always move forward, and stay
// within the file.
func FuzzSegmentFile(f *testing.F) {
	seg := seedSegment(f, func(s *Spool) {
		for i := range 4 {
			s.appendOne([]byte("org.fedoraproject.prod.git.receive"), fmt.Appendf(nil, `{"msg": {"n": %d}}`, i), time.Unix(1700000000, 0))
		}
	})
	f.Add(seg)
	lengthFlipped := slices.Clone(seg)
	lengthFlipped[len(seg)/4+3] ^= 0xff
	f.Add(lengthFlipped)
	f.Add(seg[:len(seg)-3])
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "seg")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		sf := newSegmentFile(file, 4096)
		sf.end = int64(len(data))
		for {
			before := sf.off
			var rec Record
			err := sf.next(&rec)
			if err != nil && !errors.Is(err, errDamaged) {
				return
			}
			if sf.off <= before || sf.off > sf.end {
				t.Fatalf("moved from %d to %d (end %d): %v", before, sf.off, sf.end, err)
			}
		}
	})
}

// TestAppendBurstWaits appends a burst of large batches nobody waits for,
// far more than the pending buffer holds, faster than the writer writes:
// once the buffer is half full Append waits for the writer, so nothing is
// dropped as long as the disk keeps up.
func TestAppendBurstWaits(t *testing.T) {
	s, dropped := testSpool(t, t.TempDir(), 1<<30)
	defer s.Close()
	body := bytes.Repeat([]byte("x"), 1<<20)
	const batches = 64
	for i := range batches {
		if kept, _ := s.Append([][]byte{[]byte("t")}, [][]byte{body}, time.Now(), false); kept != 1 {
			t.Fatalf("batch %d of 1 MiB not kept (dropped %v)", i, dropped)
		}
	}
	waitWritten(t, s, batches)
}

// TestCompletionWaitsForStalledWriter stalls the writer (as a hung disk
// would, by holding the lock it needs to write) and checks that Append
// still returns at once, that a confirmed batch's Completion completes only
// once the batch is in its segment file, however long that takes, and that
// batches appended meanwhile complete too, in order.
func TestCompletionWaitsForStalledWriter(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNever} {
		dir := t.TempDir()
		s := openWithPolicy(t, dir, policy)
		s.mu.Lock() // the writer's next write waits for it
		var written []*Completion
		start := time.Now()
		for i := range 5 {
			_, c := s.Append([][]byte{[]byte("t"), []byte("t")}, [][]byte{fmt.Appendf(nil, "pub %d", i), fmt.Appendf(nil, "confirmed %d", i)}, time.Now(), true)
			written = append(written, c)
			if kept, c := s.Append([][]byte{[]byte("t")}, [][]byte{fmt.Appendf(nil, "unconfirmed %d", i)}, time.Now(), false); kept != 1 || c != nil {
				t.Fatalf("policy %d: an unconfirmed batch: kept %d, Completion %v; want 1 and none", policy, kept, c)
			}
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("policy %d: 10 Appends took %v with the writer stalled: Append waited for it", policy, took)
		}
		// Longer than the bounded wait Append used to stop at.
		time.Sleep(writeWait + 200*time.Millisecond)
		for i, c := range written {
			select {
			case <-c.Done():
				t.Fatalf("policy %d: batch %d completed while the writer could not write it (failed %q)", policy, i, c.Failed())
			default:
			}
		}
		s.mu.Unlock()
		for i, c := range written {
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("policy %d: batch %d never completed once the writer could write", policy, i)
			}
			if c.Failed() != "" {
				t.Errorf("policy %d: batch %d failed: %s", policy, i, c.Failed())
			}
			data, err := os.ReadFile(lastSegment(t, dir))
			if want := fmt.Appendf(nil, "confirmed %d", i); err != nil || !bytes.Contains(data, want) {
				t.Errorf("policy %d: batch %d completed but %q is not in the segment file (%v)", policy, i, want, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// openWithPolicy opens a 1 MiB spool in dir that syncs as policy says.
func openWithPolicy(t *testing.T, dir string, policy SyncPolicy) *Spool {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: policy, Log: logtest.ForTest(t),
		Events: Events{Appended: func(int) {}, Dropped: func(string, uint64) {}}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
