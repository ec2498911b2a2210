package relay

import (
	"cmp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
	"github.com/fedora-infra/fedmsg-relay/internal/wire"
)

// Durability is what a tap promises for a batch holding a confirming
// client's message: Done is closed once the tap made the batch durable or
// failed to, and Failed then names why it failed ("" when it did not).
type Durability interface {
	Done() <-chan struct{}
	Failed() string
}

// maxHeldBatches bounds the batches whose confirm replies wait for their
// Durability: past it the forwarding loop waits for the oldest, so a disk
// slower than the confirming clients slows the bus instead of growing the
// relay.
const maxHeldBatches = 256

// tapRefusals are the confirm replies and counters for a tap's failures.
type tapRefusals struct {
	code    map[string]int    // SetReason code, by failure
	text    map[string][]byte // reply text, by failure
	counter map[string]*metrics.Counter
	log     hclog.Logger
	limit   *logLimit[string]
}

// newTapRefusals registers "refused:spool_<failure>" replies (codes from
// firstCode on) and a counter for each failure the tap may report.
func newTapRefusals(s *transport.Sockets, reg *metrics.Registry, log hclog.Logger, interval time.Duration, failures []string, firstCode int) *tapRefusals {
	t := &tapRefusals{code: map[string]int{}, text: map[string][]byte{}, counter: map[string]*metrics.Counter{},
		log: log, limit: newLogLimit[string](interval)}
	// A failure the tap did not declare is still refused, as "spool".
	for i, failure := range append(failures[:len(failures):len(failures)], "") {
		text := "refused:spool_" + strings.TrimPrefix(failure, "spool_")
		if failure == "" {
			text = "refused:spool"
		}
		t.code[failure], t.text[failure] = firstCode+i, []byte(text)
		s.SetReason(firstCode+i, text)
		t.counter[failure] = reg.Counter("fedmsg_relay_confirm_unspooled_total",
			"Confirming clients' messages answered refused:spool_<reason> because the AMQP bridge's spool could not keep them "+
				"(not published) or its write or fsync failed (published, with the Go inbound engine).", "reason", cmp.Or(failure, "other"))
	}
	return t
}

// declared returns failure if the tap declared it, else "".
func (t *tapRefusals) declared(failure string) string {
	if _, ok := t.code[failure]; ok {
		return failure
	}
	return ""
}

// note counts and logs (at most once per interval and failure) n
// confirming clients' messages refused for failure.
func (t *tapRefusals) note(failure string, n int, published bool) {
	if n == 0 {
		return
	}
	t.counter[t.declared(failure)].Add(uint64(n))
	ok, skipped := t.limit.allow(failure)
	if !ok {
		return
	}
	args := []any{"reason", failure, "messages", n, "published", published}
	if skipped > 0 {
		args = append(args, "similar_refusals_not_logged", skipped)
	}
	t.log.Warn("confirming clients refused: the AMQP bridge's spool did not keep their messages", args...)
}

// heldBatch is one batch's confirm replies and what they wait for.
type heldBatch struct {
	durable Durability // nil: only for the batches before
	replies []transport.Reply
}

// heldReplies sends the Go engine's confirm replies of each batch once the
// tap made the batch durable, in batch order, from a goroutine of its own:
// one client's replies never reorder, and a slow disk delays only the
// confirming clients, not the bus. A batch whose Durability failed gets
// its published messages' replies turned into refusals.
type heldReplies struct {
	sockets  *transport.Sockets
	refusals *tapRefusals
	queue    chan *heldBatch
	free     chan *heldBatch // answered batches, for reuse
	pending  atomic.Int64    // batches queued and not yet answered
	done     chan struct{}   // closed once the queue is closed and answered
}

func newHeldReplies(s *transport.Sockets, refusals *tapRefusals) *heldReplies {
	h := &heldReplies{sockets: s, refusals: refusals, queue: make(chan *heldBatch, maxHeldBatches),
		free: make(chan *heldBatch, maxHeldBatches+1), done: make(chan struct{})}
	go h.run()
	return h
}

// batch returns an empty batch to fill.
func (h *heldReplies) batch() *heldBatch {
	select {
	case b := <-h.free:
		return b
	default:
		return &heldBatch{replies: make([]transport.Reply, 0, 16)}
	}
}

// hold queues b to be answered after the batches before it, once durable
// is done; with nothing queued and nothing to wait for it answers at once.
// It waits while maxHeldBatches are queued.
func (h *heldReplies) hold(b *heldBatch, durable Durability) {
	if len(b.replies) == 0 || durable == nil && h.pending.Load() == 0 {
		h.answer(b)
		return
	}
	b.durable = durable
	h.pending.Add(1)
	h.queue <- b
}

func (h *heldReplies) run() {
	defer close(h.done)
	for b := range h.queue {
		if b.durable != nil {
			<-b.durable.Done()
		}
		h.answer(b)
		h.pending.Add(-1)
	}
}

// answer sends b's replies, refusing those published if its Durability
// failed, and recycles b.
func (h *heldReplies) answer(b *heldBatch) {
	if b.durable != nil {
		if failure := b.durable.Failed(); failure != "" {
			refused := 0
			for i := range b.replies {
				if r := &b.replies[i]; r.Published {
					r.Text = h.refusals.text[h.refusals.declared(failure)]
					refused++
				}
			}
			h.refusals.note(failure, refused, true)
		}
	}
	h.sockets.SendReplies(b.replies)
	clear(b.replies)
	b.durable, b.replies = nil, b.replies[:0]
	select {
	case h.free <- b:
	default:
	}
}

// stop answers what is queued as soon as each batch is durable, waiting
// until deadline at most, and reports how many batches it left
// unanswered (their replies go out if the tap completes them later).
func (h *heldReplies) stop(deadline time.Time) int {
	close(h.queue)
	select {
	case <-h.done:
		return 0
	case <-time.After(time.Until(deadline)):
		return int(h.pending.Load())
	}
}

// refuseUnspooled turns the verdicts of the batch's accepted confirming
// clients' messages into refusals for failure before the batch is sent:
// the tap kept none of the batch, so they are not published either.
func (r *Relay) refuseUnspooled(failure string, n int, b *batchCounts) {
	s, refused := r.sockets, 0
	for i := range n {
		if m := s.Message(i); m.Source == transport.FromRouter && r.batch.reasons[i] == wire.OK {
			s.SetVerdict(i, transport.Drop+r.refusals.code[r.refusals.declared(failure)])
			b.relayedBytes -= uint64(m.Size)
			refused++
		}
	}
	r.refusals.note(failure, refused, false)
}
