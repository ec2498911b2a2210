package relay

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
)

// ResumeOptions configure the resume gate: after a restart, producers flush
// what they queued while the relay was away as soon as they reconnect, and
// listeners still in their reconnect back-off would miss it. So the relay
// accepts inbound at once but publishes only once the listeners are back.
type ResumeOptions struct {
	// Subscriptions is how many the outbound peers held when the previous
	// relay stopped (a listener subscribed to "" holds one).
	Subscriptions int
	// Hold is the longest wait for them; 0 publishes at once.
	Hold time.Duration
}

// Why the gate opened, as the metric and the log say it.
const (
	openedSubscribed = "subscribed"  // every subscription is back
	openedHold       = "resume_hold" // some never came back in time
	openedStopping   = "stopping"    // stopped while holding: the drain publishes
	openedNotNeeded  = "not_needed"  // nobody to wait for, or the gate is off
)

type resumeStats struct {
	heldNanos atomic.Int64
	opened    map[string]*metrics.Gauge
}

func newResumeStats(reg *metrics.Registry) *resumeStats {
	s := &resumeStats{opened: map[string]*metrics.Gauge{}}
	reg.GaugeFunc("fedmsg_relay_resume_held_seconds", "How long publishing was held at start for the previous relay's listeners to re-subscribe.",
		func() float64 { return time.Duration(s.heldNanos.Load()).Seconds() })
	for _, reason := range []string{openedSubscribed, openedHold, openedStopping, openedNotNeeded} {
		s.opened[reason] = reg.Gauge("fedmsg_relay_resume_opened", "1 for the reason the resume gate opened: subscribed, resume_hold, stopping or not_needed.", "reason", reason)
	}
	return s
}

// holdForListeners is the resume gate. It runs before the forwarding loop,
// so once open it costs the hot path nothing; inbound messages meanwhile
// wait in libzmq's queues (inbound_hwm) and in the producers' own.
func (r *Relay) holdForListeners(ctx context.Context) {
	want, hold := r.opts.Resume.Subscriptions, r.opts.Resume.Hold
	start := time.Now()
	got, reason := 0, openedNotNeeded
	if want > 0 && hold > 0 {
		deadline := start.Add(hold)
		for {
			r.lastLoop.Store(time.Now().UnixNano()) // holding is alive: the watchdog keeps pinging
			got = r.sockets.Subscriptions(max(0, min(pollInterval, time.Until(deadline))))
			if got >= want {
				reason = openedSubscribed
				break
			}
			if ctx.Err() != nil {
				reason = openedStopping
				break
			}
			if !time.Now().Before(deadline) {
				reason = openedHold
				break
			}
		}
	}
	held := time.Since(start)
	r.resume.heldNanos.Store(int64(held))
	r.resume.opened[reason].Set(1)
	r.log.Info("publishing: resume gate open", "held", held.Round(time.Millisecond), "reason", reason,
		"subscriptions", got, "expected", want, "resume_hold", hold)
}

// Subscriptions is how many subscriptions the outbound peers held when Run
// returned: what the next relay's gate waits for.
func (r *Relay) Subscriptions() int { return int(r.finalSubscriptions.Load()) }
