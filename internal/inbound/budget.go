package inbound

import (
	"sync"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
)

// errOverShare disconnects a peer that stayed over its share of the buffer budget.
var errOverShare = endpoint.Errorf(ReasonOverShare, "over its share of the buffer budget")

// budget charges what inbound holds to the relay's one byte budget
// (membudget), which the confirm endpoint, the subscribers' queues and the
// bridge share: connections' fixed cost, messages being read and messages
// queued for the forwarding loop. Each connection may hold its fair share
// of the whole (never below floor) while the total stays within the limit.
// Reserving and releasing are atomic; the lock is taken only to join, leave
// and evict.
type budget struct {
	shared *membudget.Budget
	floor  int64
	grace  time.Duration // how long a connection may wait for room

	mu    sync.Mutex
	conns map[*conn]struct{}
}

func newBudget(shared *membudget.Budget, floor int64, grace time.Duration) *budget {
	return &budget{shared: shared, floor: floor, grace: grace, conns: map[*conn]struct{}{}}
}

// share is what one connection may hold when there is room: its fair part,
// but always enough for one message of the largest size.
func (b *budget) share() int64 { return max(b.shared.Fair(), b.floor) }

// join admits a connection with its fixed cost, making room as reserve
// does, or refuses it when there is none.
func (b *budget) join(c *conn, cost int64) error {
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.mu.Unlock()
	b.shared.Join()
	c.joined = true
	if err := b.reserve(c, cost, false); err != nil {
		return err
	}
	c.cost = cost
	return nil
}

// leave releases the connection's fixed cost; what it queued the
// forwarding loop releases when it takes it, and an unfinished message is
// released by its reader.
func (b *budget) leave(c *conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
	if c.joined {
		b.shared.Leave()
	}
	b.settle(c)
	b.release(c, c.cost, false)
	c.cost = 0
}

// reserve waits until c may hold n more bytes (of an unfinished message
// if partial). A connection at its share is simply not read (TCP pushes
// back) for as long as the forwarding loop takes to free what it queued;
// one whose unfinished message stays over its share for the grace period
// while the budget is full is given up. A connection within its share
// that finds the budget full evicts a peer over its fair part that is
// holding an unfinished message (a stalled one would never give it back).
// Room freed anywhere in the relay wakes it (membudget's Changed).
//
// A frame is taken from what the connection reserved ahead when it can:
// no atomic operation, and so no memory barrier, per frame.
func (b *budget) reserve(c *conn, n int64, partial bool) error {
	if partial && n <= c.credit {
		c.credit -= n
		c.partial += n
		return nil
	}
	b.settle(c)
	var timer *time.Timer // only while over its share with the budget full
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var changed <-chan struct{}
	for {
		held, share := c.held(), b.share()
		over := held+n > share
		if !over && b.take(c, n, partial, held+n+creditAhead <= share) {
			return nil
		}
		if changed == nil {
			// Take the channel, then look again: a release in between wakes us.
			changed = b.shared.Changed()
			continue
		}
		full := b.shared.Free() < n
		if !over && full {
			b.evict(c, n)
		}
		// Waiting for the forwarding loop to take what the connection queued
		// is backpressure, however long; an unfinished message over the
		// share with the budget full is not. A new connection (its fixed
		// cost, not partial) is refused rather than kept waiting: it holds a
		// socket and a goroutine meanwhile.
		stuck := c.cost+c.partial+n > share
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
		c.flush() // what it queued may be what frees room
		select {
		case <-changed:
		case <-c.Gone():
			return errClosed
		case <-timeout:
			return errOverShare
		}
		changed = nil
	}
}

// creditAhead is what a reader reserves ahead for the frames to come,
// beyond the one it reads, when its share and the budget have room: it
// gives back what is left before it may wait (settle), so the budget holds
// at most this much unread per reader at work.
const creditAhead = 16 << 10

// take reserves n bytes for c now, and creditAhead more for its next
// frames if ahead and the budget has room for both, and reports whether
// it could.
func (b *budget) take(c *conn, n int64, partial, ahead bool) bool {
	credit := int64(0)
	if partial && ahead && b.shared.Reserve(n+creditAhead) {
		credit = creditAhead
	} else if !b.shared.Reserve(n) {
		return false
	}
	c.charged.Add(n + credit)
	c.credit += credit
	if partial {
		c.partial += n
	}
	return true
}

// settle gives back what c reserved ahead and did not use, and shows
// evictors how much of an unfinished message it holds: before the reader
// may wait, for the peer or for room.
func (b *budget) settle(c *conn) {
	if c.credit > 0 {
		c.charged.Add(-c.credit)
		b.shared.Release(c.credit)
		c.credit = 0
	}
	c.unfinished.Store(c.partial)
}

// reserveCost adds n to c's fixed cost if its share and the budget have
// room now, without waiting, and reports whether they had.
func (b *budget) reserveCost(c *conn, n int64) bool {
	if c.held()+n > b.share() || !b.shared.Reserve(n) {
		return false
	}
	c.charged.Add(n)
	c.cost += n
	return true
}

// evict disconnects, for c (nil: for the rest of the relay, as the
// budget's reclaimer), the connections holding the largest unfinished
// messages over their fair part, until what they hold, with what those
// already disconnected have yet to give back, reaches need; it reports
// whether any bytes are coming back.
//
// It weighs the unfinished message with the fixed cost of a connection,
// not all a connection holds: a producer at work holds a larger read
// buffer and the messages queued for the forwarding loop, often over the
// fair part when many share the budget, and is in the middle of a message
// whenever a read ends inside one; disconnecting it would lose what its
// libzmq had queued. Less than a read buffer unfinished is never worth it.
func (b *budget) evict(c *conn, need int64) bool {
	over := max(b.shared.Fair()-connCost, readBufferSize) // unfinished bytes over the fair part
	b.mu.Lock()
	defer b.mu.Unlock()
	var coming int64
	for o := range b.conns {
		if o.IsGone() {
			coming += o.held()
		}
	}
	for coming < need {
		var victim *conn
		var most int64
		for o := range b.conns {
			if unfinished := o.unfinished.Load(); o != c && unfinished > over && unfinished > most && !o.IsGone() {
				victim, most = o, unfinished
			}
		}
		if victim == nil {
			break
		}
		victim.Close(ReasonOverShare)
		coming += victim.held()
	}
	return coming > 0
}

// connected is what the connections still connected hold now.
func (b *budget) connected() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sum int64
	for c := range b.conns {
		sum += c.held()
	}
	return sum
}

// release gives back n bytes of c, of an unfinished message if partial.
func (b *budget) release(c *conn, n int64, partial bool) {
	if n == 0 {
		return
	}
	if partial {
		c.partial -= n
	}
	c.charged.Add(-n)
	b.shared.Release(n)
}
