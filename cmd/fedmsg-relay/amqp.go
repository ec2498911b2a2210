package main

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge"
	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/relay"
	"github.com/fedora-infra/fedmsg-relay/internal/spool"
)

// startBridge connects the relay to RabbitMQ: every batch the relay publishes
// goes to the bridge's spool, and, when a queue is configured, messages
// consumed from it are injected into the bus through the relay's injector.
// stopInject makes later injections fail (so they are not acknowledged): call
// it before the relay drains, so every acknowledged message is in the relay's
// queue when it does. stop ends the bridge and flushes the spool: call it
// before the relay closes.
func startBridge(cfg *config.AMQP, budget *membudget.Budget, r *relay.Relay, log hclog.Logger, reg *metrics.Registry) (stopInject, stop func(), err error) {
	bridge, err := amqpbridge.New(bridgeOptions(cfg, budget), log, reg)
	if err != nil {
		return nil, nil, fmt.Errorf("amqp bridge: %w", err)
	}
	r.SetTap(func(topics, bodies [][]byte, confirmed bool) relay.Durability {
		if written := bridge.Enqueue(topics, bodies, confirmed); written != nil {
			return written
		}
		return nil // not a nil *spool.Completion in the interface
	}, spool.CompletionFailures)

	var inject amqpbridge.Inject
	stopInject = func() {}
	if cfg.Consuming() {
		injector, err := r.NewInjector()
		if err != nil {
			bridge.Close()
			return nil, nil, err
		}
		inject, stopInject = injector.SendAsync, injector.Stop
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
		if err := bridge.Close(); err != nil {
			log.Error("close spool", "error", err)
		}
	}, nil
}
