package relay

import (
	"errors"
	"fmt"
	"sync"

	zmq "github.com/pebbe/zmq4"
)

// ErrInjectorStopped refuses messages once the relay is draining: a caller
// that acknowledges upstream only after Send (the AMQP bridge's consumer)
// then leaves the message with the broker.
var ErrInjectorStopped = errors.New("relay is shutting down")

// Injector publishes messages into the bus from inside the process, as if
// they had arrived inbound; the tap does not see them. Safe for concurrent use.
type Injector struct {
	mu      sync.Mutex // one libzmq socket, several goroutines
	push    *zmq.Socket
	stopped bool
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

// Send queues one message for the forwarding loop. A nil error means the
// relay has it: Run's drain publishes it even if Stop follows at once.
func (in *Injector) Send(topic, body []byte) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return ErrInjectorStopped
	}
	_, err := in.push.SendMessage(topic, body)
	return err
}

// Stop makes later Sends fail with ErrInjectorStopped, after waiting for a
// Send in progress. Call it before the relay drains.
func (in *Injector) Stop() {
	in.mu.Lock()
	in.stopped = true
	in.mu.Unlock()
}

func (in *Injector) close() {
	in.Stop()
	in.push.Close()
}
