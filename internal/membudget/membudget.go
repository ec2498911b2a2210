// Package membudget is the relay's one byte budget for everything it
// queues: producers' messages being read and waiting for the forwarding
// loop, confirm requests, subscribers' send queues and the bridge's
// hand-off to the spool. Each part charges what it holds and gives it back
// when the bytes are gone; the parts keep their own per-connection
// accounting and ask the budget for the total and for a fair share.
//
// The hot path reserves and releases with one atomic operation each; a
// lock is taken only by those who wait for room, and by the release that
// wakes them.
//
// Bytes a part has accepted for delivery come before bytes still being
// read from strangers: a part that finds no room may ask the budget to
// Reclaim it, which calls the reclaimer inbound registered (it disconnects
// the peers holding the most unfinished messages over their fair part).
package membudget

import (
	"sync"
	"sync/atomic"
)

// Budget is a byte limit shared by every part of the relay.
type Budget struct {
	limit   int64
	used    atomic.Int64
	holders atomic.Int64 // connections that hold a share: producers, confirm peers, subscribers

	waiting atomic.Bool // someone holds changed: the next Release closes it
	mu      sync.Mutex
	changed chan struct{}

	reclaimer atomic.Pointer[func(need int64) bool]
}

// New returns a budget of limit bytes (at least 1).
func New(limit int64) *Budget {
	return &Budget{limit: max(limit, 1), changed: make(chan struct{})}
}

// Limit is the configured total.
func (b *Budget) Limit() int64 { return b.limit }

// Used is what the budget holds now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Free is what is left, never negative.
func (b *Budget) Free() int64 { return max(b.limit-b.used.Load(), 0) }

// Reserve takes n bytes if they fit and reports whether they did.
func (b *Budget) Reserve(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// Release gives back n bytes and wakes those waiting for room.
func (b *Budget) Release(n int64) {
	if n == 0 {
		return
	}
	b.used.Add(-n)
	if b.waiting.Load() {
		b.mu.Lock()
		if b.waiting.Load() {
			b.waiting.Store(false)
			close(b.changed)
			b.changed = make(chan struct{})
		}
		b.mu.Unlock()
	}
}

// Changed returns a channel closed by the next Release. Take it before
// trying Reserve, so that a release between the two is not missed.
func (b *Budget) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waiting.Store(true)
	return b.changed
}

// Join counts one more connection holding a share; Leave undoes it.
func (b *Budget) Join()  { b.holders.Add(1) }
func (b *Budget) Leave() { b.holders.Add(-1) }

// Holders is the number of connections sharing the budget.
func (b *Budget) Holders() int64 { return b.holders.Load() }

// Fair is each connection's equal part of the budget.
func (b *Budget) Fair() int64 { return b.limit / max(b.holders.Load(), 1) }

// SetReclaimer registers what Reclaim calls: it should start freeing, without
// waiting, at least need bytes held by those who may lose them, and report
// whether any are on their way.
func (b *Budget) SetReclaimer(f func(need int64) bool) { b.reclaimer.Store(&f) }

// Reclaim asks the reclaimer, if any, to free need bytes and reports
// whether any are coming. It does not wait for them: they come back
// through Release (and Changed).
func (b *Budget) Reclaim(need int64) bool {
	if f := b.reclaimer.Load(); f != nil {
		return (*f)(need)
	}
	return false
}
