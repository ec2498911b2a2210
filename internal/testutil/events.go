package testutil

import (
	"sync"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
)

// Events records a Go engine's connection events: pass Add as its
// Options.Event.
type Events struct {
	mu     sync.Mutex
	events []endpoint.Event
}

// Add records e.
func (r *Events) Add(e endpoint.Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }

// All is every event so far.
func (r *Events) All() []endpoint.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]endpoint.Event(nil), r.events...)
}

// Find is the first event of kind with reason ("": any reason).
func (r *Events) Find(kind endpoint.EventKind, reason string) (endpoint.Event, bool) {
	for _, e := range r.All() {
		if e.Kind == kind && (reason == "" || e.Reason == reason) {
			return e, true
		}
	}
	return endpoint.Event{}, false
}

// Count is how many events of kind with reason ("": any reason) there were.
func (r *Events) Count(kind endpoint.EventKind, reason string) int {
	n := 0
	for _, e := range r.All() {
		if e.Kind == kind && (reason == "" || e.Reason == reason) {
			n++
		}
	}
	return n
}
