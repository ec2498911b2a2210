package relay

import (
	"errors"
	"fmt"
	"sync"

	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/wire"
)

// ErrInjectorStopped refuses messages once the relay is draining, and ends
// the wait of a message the relay stopped before publishing: a caller that
// acknowledges upstream only after Send (the AMQP bridge's consumer) then
// leaves the message with the broker.
var ErrInjectorStopped = errors.New("relay is shutting down")

// RefusedError is Send's answer for a message the relay checked and
// refused: it will never be published.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "refused: " + e.Reason }

// RefusedReason is the drop reason, for callers that count refusals
// without importing this package.
func (e *RefusedError) RefusedReason() string { return e.Reason }

// Injector publishes messages into the bus from inside the process, as if
// they had arrived inbound; the tap does not see them, and signatures are
// checked only with Options.VerifyInjected. Safe for concurrent use.
type Injector struct {
	mu      sync.Mutex // one libzmq socket, several goroutines
	push    *zmq.Socket
	stopped bool

	// waiting holds one channel per message sent and not yet decided, in
	// the order of the inproc pipe, which keeps the order of one socket.
	waitMu  sync.Mutex
	waiting []chan error
}

// NewInjector returns the relay's injector; Options.Inject must be set.
// The relay closes it in Close.
func (r *Relay) NewInjector() (*Injector, error) {
	if !r.opts.Inject {
		return nil, errors.New("relay opened without Options.Inject")
	}
	if r.inject != nil {
		return r.inject, nil
	}
	push, err := r.sockets.NewInjector()
	if err != nil {
		return nil, fmt.Errorf("open injector: %w", err)
	}
	r.inject = &Injector{push: push}
	return r.inject, nil
}

// Send publishes one message and returns once the forwarding loop decided
// on it, like a confirming client's reply: nil when it was handed to the
// outbound socket, a *RefusedError when the relay refused it, and
// ErrInjectorStopped when the relay stopped first.
func (in *Injector) Send(topic, body []byte) error { return <-in.SendAsync(topic, body) }

// SendAsync publishes one message and returns at once; the channel
// receives Send's answer, exactly once, when the forwarding loop decided.
// The answers of one caller's messages come in the order it sent them.
func (in *Injector) SendAsync(topic, body []byte) <-chan error {
	decided := make(chan error, 1)
	in.mu.Lock()
	if in.stopped {
		in.mu.Unlock()
		decided <- ErrInjectorStopped
		return decided
	}
	in.waitMu.Lock()
	in.waiting = append(in.waiting, decided)
	in.waitMu.Unlock()
	_, err := in.push.SendMessage(topic, body)
	if err != nil {
		// Never queued: the loop will not decide on it, and no Send came after it.
		in.waitMu.Lock()
		in.waiting = in.waiting[:len(in.waiting)-1]
		in.waitMu.Unlock()
		decided <- err
	}
	in.mu.Unlock()
	return decided
}

// decide answers the oldest waiting Sends, one per injected message of a
// batch, in order: wire.OK for published.
func (in *Injector) decide(reasons []wire.Reason) {
	in.waitMu.Lock()
	defer in.waitMu.Unlock()
	for _, reason := range reasons {
		if len(in.waiting) == 0 {
			return
		}
		var err error
		if reason != wire.OK {
			err = &RefusedError{Reason: reason.String()}
		}
		in.waiting[0] <- err
		in.waiting = in.waiting[1:]
	}
}

// finish stops the injector and answers every waiting Send with
// ErrInjectorStopped: the relay stopped, and what it did not publish by then
// it never will. It does nothing on a nil Injector (none was opened).
func (in *Injector) finish() {
	if in == nil {
		return
	}
	in.Stop()
	in.waitMu.Lock()
	defer in.waitMu.Unlock()
	for _, decided := range in.waiting {
		decided <- ErrInjectorStopped
	}
	in.waiting = nil
}

// Stop makes later Sends fail with ErrInjectorStopped, after waiting for a
// Send in progress. Call it before the relay drains.
func (in *Injector) Stop() {
	in.mu.Lock()
	in.stopped = true
	in.mu.Unlock()
}

func (in *Injector) close() {
	in.finish()
	in.push.Close()
}
