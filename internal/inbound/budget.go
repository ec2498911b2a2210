package inbound

import (
	"errors"
	"sync"
	"time"
)

// errOverShare disconnects a peer that stayed over its share of the budget.
var errOverShare = errors.New("over its share of the inbound buffer budget")

// budget is the one byte budget for everything held inbound: connections'
// fixed cost, messages being read and messages queued for the forwarding
// loop. Each connection may hold its fair share (limit / connections, never
// below floor) while the total stays within limit.
type budget struct {
	limit, floor int64
	grace        time.Duration // how long a connection may wait for room

	mu      sync.Mutex
	used    int64
	conns   map[*conn]struct{}
	changed chan struct{} // closed and replaced when bytes are released and someone waits
	waiting int           // reserves waiting on changed
}

func newBudget(limit, floor int64, grace time.Duration) *budget {
	return &budget{limit: limit, floor: floor, grace: grace, conns: map[*conn]struct{}{}, changed: make(chan struct{})}
}

// fair is each connection's equal part of the budget; b.mu held.
func (b *budget) fair() int64 { return b.limit / int64(max(len(b.conns), 1)) }

// share is what one connection may hold when there is room: its fair part,
// but always enough for one message of the largest size; b.mu held.
func (b *budget) share() int64 { return max(b.fair(), b.floor) }

// join admits a connection with its fixed cost, making room as reserve
// does, or refuses it when there is none.
func (b *budget) join(c *conn, cost int64) error {
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.mu.Unlock()
	return b.reserve(c, cost, false)
}

// leave releases what the connection still holds but what it queued: the
// forwarding loop releases that when it takes it.
func (b *budget) leave(c *conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, c)
	b.releaseLocked(c, c.held-c.queued)
}

// reserve waits until c may hold n more bytes (of an unfinished message
// if partial). A connection at its share is simply not read (TCP pushes
// back) for as long as the forwarding loop takes to free what it queued;
// one whose unfinished message stays over its share for the grace period
// while the budget is full is given up. A connection within its
// share that finds the budget full evicts a peer over its fair part that is
// holding an unfinished message (a stalled one would never give it back).
func (b *budget) reserve(c *conn, n int64, partial bool) error {
	var timer *time.Timer // only while over its share with the budget full
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		share := b.share()
		over, full := c.held+n > share, b.used+n > b.limit
		if !over && !full {
			b.used += n
			c.held += n
			if partial {
				c.partial += n
			}
			return nil
		}
		if !over {
			b.evictLocked(c)
		}
		// Waiting for the forwarding loop to take what the connection queued
		// is backpressure, however long; an unfinished message over the
		// share with the budget full is not. A new connection (its fixed
		// cost, not partial) is refused rather than kept waiting: it holds a
		// socket and a goroutine meanwhile.
		stuck := c.held-c.queued+n > share
		timed := stuck && full || !partial
		switch {
		case timed && timer == nil:
			timer = time.NewTimer(b.grace)
		case !timed && timer != nil:
			timer.Stop()
			timer = nil
		}
		var timeout <-chan time.Time // nil: wait for room as long as it takes
		if timer != nil {
			timeout = timer.C
		}
		c.flushNotify() // what it queued may be what frees room
		changed := b.changed
		b.waiting++
		b.mu.Unlock()
		var err error
		select {
		case <-changed:
		case <-c.gone:
		case <-timeout:
			err = errOverShare
		}
		b.mu.Lock()
		b.waiting--
		if err != nil {
			return err
		}
		if c.isGone() {
			return errClosed
		}
	}
}

// evictLocked disconnects, for c, the connection furthest over its fair
// part among those holding an unfinished message.
func (b *budget) evictLocked(c *conn) {
	fair := b.fair()
	var victim *conn
	for o := range b.conns {
		if o != c && o.held > fair && o.partial > 0 && !o.isGone() && (victim == nil || o.held > victim.held) {
			victim = o
		}
	}
	if victim != nil {
		victim.close(ReasonOverShare)
	}
}

// release gives back n bytes of c, of an unfinished message if partial.
func (b *budget) release(c *conn, n int64, partial bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if partial {
		c.partial -= n
	}
	b.releaseLocked(c, n)
}

func (b *budget) releaseLocked(c *conn, n int64) {
	if n == 0 {
		return
	}
	b.used -= n
	c.held -= n
	if b.waiting > 0 {
		close(b.changed)
		b.changed = make(chan struct{})
	}
}

// Used is what the budget holds now, for metrics and tests.
func (b *budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
