package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge"
	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/relay"
)

// errInjectStopped refuses consumed messages once the relay drains: they
// stay unacknowledged and the broker keeps them.
var errInjectStopped = errors.New("relay is shutting down")

// startBridge connects the relay to RabbitMQ: every published message goes
// to the bridge's spool, and, when a queue is configured, messages consumed
// from it are injected into the bus. stopInject makes later injections fail
// (so they are not acknowledged): call it before the relay drains, so every
// acknowledged message is in the relay's queue when it does. stop ends the
// bridge and flushes the spool: call it before the relay closes its sockets.
func startBridge(cfg *config.Config, r *relay.Relay, log hclog.Logger, reg *metrics.Registry) (stopInject, stop func(), err error) {
	bridge, err := amqpbridge.New(bridgeOptions(&cfg.AMQP), log, reg)
	if err != nil {
		return nil, nil, fmt.Errorf("amqp bridge: %w", err)
	}
	r.SetTap(bridge.Publish)

	var inject func(topic, body []byte) error
	closeInjector, stopInject := func() {}, func() {}
	if cfg.AMQP.Consume.Queue != "" {
		push, err := r.Sockets().NewInjector()
		if err != nil {
			bridge.Close()
			return nil, nil, err
		}
		var mu sync.Mutex // one libzmq socket, several consumer goroutines
		stopped := false
		inject = func(topic, body []byte) error {
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				return errInjectStopped
			}
			_, err := push.SendMessage(topic, body)
			return err
		}
		stopInject = func() {
			mu.Lock() // waits for an injection in progress
			stopped = true
			mu.Unlock()
		}
		closeInjector = func() { push.Close() }
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := bridge.Run(ctx, inject); err != nil {
			log.Error("bridge stopped", "error", err)
		}
	}()
	return stopInject, func() {
		cancel()
		<-done
		closeInjector()
		if err := bridge.Close(); err != nil {
			log.Error("close spool", "error", err)
		}
	}, nil
}
