package crash

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/spool"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/test/crash/crashfs"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

// crashPoint is when the host dies.
type crashPoint int

const (
	// anyMoment: after 800ms of traffic, wherever the writer is.
	anyMoment crashPoint = iota
	// afterSegmentWrite: right after a write to a segment, before its fsync.
	afterSegmentWrite
	// afterSegmentSync: right after a segment's fsync made it durable.
	afterSegmentSync
	// afterDirSync: right after a directory fsync (a segment created or
	// removed, the cursor replaced).
	afterDirSync
)

func (p crashPoint) String() string {
	return [...]string{"any-moment", "mid-write", "after-segment-fsync", "after-directory-fsync"}[p]
}

// intervalSlack is what, beyond spool_sync_interval, a message may wait
// between the writer's write and its next fsync's completion: the fsync
// itself through FUSE and the scheduling of the writer.
const intervalSlack = 100 * time.Millisecond

func TestHostCrash(t *testing.T) {
	broker := amqptest.Require(t)
	for _, sc := range []struct {
		sync     string
		point    crashPoint
		mode     crashfs.Mode
		brokerUp bool // the relay publishes before the crash too: cursor saves, segment removals
		// syncDelay is how long each fsync takes before the crash (a slow disk).
		syncDelay time.Duration
		knownBug  string
	}{
		{"always", anyMoment, crashfs.Strict, false, 0, ""},
		{"always", afterSegmentWrite, crashfs.Strict, false, 0, ""},
		{"always", afterSegmentWrite, crashfs.WriteBack, false, 0, ""},
		{"always", afterSegmentSync, crashfs.Strict, false, 0, ""},
		{"always", afterDirSync, crashfs.WriteBack, true, 0, ""},
		{"interval", anyMoment, crashfs.Strict, false, 0, ""},
		{"interval", afterSegmentWrite, crashfs.Strict, false, 0, ""},
		{"interval", afterSegmentSync, crashfs.Strict, false, 0, ""},
		{"never", anyMoment, crashfs.WriteBack, false, 0, ""},
		{"never", afterSegmentWrite, crashfs.WriteBack, true, 0, ""},
		{"always", anyMoment, crashfs.Strict, false, 700 * time.Millisecond,
			"known bug: under spool_sync: always, Append stops waiting for the writer after writeWait (500ms), so an fsync slower than that lets the relay answer ok for messages not yet durable"},
	} {
		up := "broker-down"
		if sc.brokerUp {
			up = "broker-up"
		}
		name := fmt.Sprintf("%s/%s/%s/%s", sc.sync, sc.point, sc.mode, up)
		if sc.syncDelay > 0 {
			name += fmt.Sprintf("/fsync-%v", sc.syncDelay)
		}
		t.Run(name, func(t *testing.T) {
			if sc.knownBug != "" {
				t.Skip(sc.knownBug)
			}
			h := newHost(t)
			h.fs.SetSyncDelay(sc.syncDelay)
			queue := bridgeQueue(t, broker)
			url := unreachableURL(t)
			if sc.brokerUp {
				url = broker.URL()
			}
			relay := h.startRelay(t, url, sc.sync)
			prod := h.startProducers(t, 4)
			time.Sleep(800 * time.Millisecond)
			frozeAt := freezeAt(t, h.fs, sc.point)
			// A fresh seed each run explores other write-backs (logged with the results).
			seed := uint64(time.Now().UnixNano())
			crashHost(t, h, relay, sc.mode, seed)
			prod.halt()
			oks := prod.acknowledged()
			if len(oks) == 0 {
				t.Fatalf("no message confirmed before the crash (%d fedmsg-logger runs failed)", prod.fail)
			}

			relay = h.startRelay(t, broker.URL(), sc.sync)
			after := h.sendConfirmed(t, "after", 10)
			drain(t, h.metrics, queue)
			got := delivered(t, queue)

			var lost []confirmed
			for _, c := range oks {
				if got[c.id] == 0 {
					lost = append(lost, c)
				}
			}
			for _, id := range after {
				if got[id] == 0 {
					t.Errorf("%s, confirmed after the restart, never reached RabbitMQ: the relay stopped publishing", id)
				}
			}
			duplicates, pub := 0, 0
			for id, n := range got {
				duplicates += n - 1
				if strings.HasPrefix(id, "p-") {
					pub++
				}
			}
			if sc.sync == "never" {
				if cpu := idleCPU(t, relay); cpu > 0.2 {
					t.Errorf("the recovered relay used %.2fs of CPU in an idle second: it spins", cpu)
				}
			}
			// Scraped last: it also shows the relay still runs.
			corrupt := testutil.Metric(t, h.metrics, `fedmsg_relay_amqp_dropped_total{reason="corrupt"}`)
			window := lossWindow(frozeAt, lost)
			t.Logf("%s: %d confirmed before the crash, %d lost (oldest confirmed %v before the crash), %d duplicates, %d unconfirmed PUB messages delivered, %d records counted corrupt, %d fsyncs, write-back seed %d; recovery said: %s",
				name, len(oks), len(lost), window, duplicates, pub, int(corrupt), h.fs.Syncs(), seed, recoveryLog(relay.Output()))
			if out := relay.Output(); strings.Contains(out, "panic:") || strings.Contains(out, "fatal error:") {
				t.Errorf("the relay crashed recovering its spool:\n%s", out)
			}

			switch sc.sync {
			case "always":
				if len(lost) > 0 {
					t.Errorf("spool_sync: always lost %d of %d confirmed messages, e.g. %s", len(lost), len(oks), lost[0].id)
				}
			case "interval":
				if bound := spool.DefaultSyncInterval + intervalSlack; window > bound {
					t.Errorf("spool_sync: interval lost a message confirmed %v before the crash, more than the interval and slack (%v)", window, bound)
				}
			}
		})
	}
}

// freezeAt makes the host die at point and returns when it did.
func freezeAt(t *testing.T, c *crashfs.FS, point crashPoint) time.Time {
	t.Helper()
	segment := func(kind crashfs.OpKind) func(crashfs.Op) bool {
		return func(op crashfs.Op) bool { return op.Kind == kind && strings.HasSuffix(op.Path, ".seg") }
	}
	var after func(crashfs.Op) bool
	switch point {
	case anyMoment:
		c.Freeze()
		return time.Now()
	case afterSegmentWrite:
		after = segment(crashfs.Write)
	case afterSegmentSync:
		after = segment(crashfs.FileSync)
	case afterDirSync:
		after = func(op crashfs.Op) bool { return op.Kind == crashfs.DirSync }
	}
	select {
	case <-c.FreezeAfter(after):
		return time.Now()
	case <-time.After(5 * time.Second):
		// Frozen and released: nothing can block the relay's exit at cleanup.
		c.Release()
		t.Fatalf("nothing reached the crash point %s within 5s", point)
		return time.Time{}
	}
}

// lossWindow is how long before the crash the oldest lost message was
// confirmed (0 for none lost). Confirmations are timed when fedmsg-logger
// exited, a few milliseconds after the relay answered: the window is
// understated by that much, never overstated.
func lossWindow(frozeAt time.Time, lost []confirmed) time.Duration {
	if len(lost) == 0 {
		return 0
	}
	oldest := slices.MinFunc(lost, func(a, b confirmed) int { return a.at.Compare(b.at) })
	return max(frozeAt.Sub(oldest.at), 0)
}

// sendConfirmed sends n messages with fedmsg-logger --confirm, each of
// which must be confirmed, and returns their ids.
func (h *host) sendConfirmed(t *testing.T, prefix string, n int) []string {
	t.Helper()
	logger := testutil.Binary(t, "fedmsg-logger")
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		out, err := h.logger(logger, id, 5*time.Second).CombinedOutput()
		if err != nil {
			t.Fatalf("fedmsg-logger --confirm after the restart: %v\n%s", err, out)
		}
		ids = append(ids, id)
	}
	return ids
}

// idleCPU is the CPU time the relay used in a second without traffic.
func idleCPU(t *testing.T, relay *testutil.Process) float64 {
	t.Helper()
	before, err := testutil.CPUSeconds(relay.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	after, err := testutil.CPUSeconds(relay.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return after - before
}

// recoveryLog summarises what the relay logged about its spool at start:
// how often each recovery message appeared.
func recoveryLog(output string) string {
	var parts []string
	for _, msg := range []string{"recovered unconfirmed messages", "truncating segment after its last whole record",
		"records lost to a damaged segment", "segment has damaged records", "cursor file is corrupt", "spool damaged"} {
		if n := strings.Count(output, msg); n > 0 {
			parts = append(parts, fmt.Sprintf("%q x%d", msg, n))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
