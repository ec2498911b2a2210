package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge"
	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/relay"
)

// startBridge connects the relay to RabbitMQ: every published message goes
// to the bridge's spool, and, when a queue is configured, messages consumed
// from it are injected into the bus. stop ends it and flushes the spool; call
// it before the relay closes its sockets.
func startBridge(cfg *config.Config, r *relay.Relay, log hclog.Logger, reg *metrics.Registry) (stop func(), err error) {
	bridge, err := amqpbridge.New(cfg.AMQP, log, reg)
	if err != nil {
		return nil, fmt.Errorf("amqp bridge: %w", err)
	}
	r.SetTap(bridge.Publish)

	var inject func(topic, body []byte) error
	closeInjector := func() {}
	if cfg.AMQP.Consume.Queue != "" {
		push, err := r.Sockets().NewInjector()
		if err != nil {
			bridge.Close()
			return nil, err
		}
		var mu sync.Mutex // one libzmq socket, several consumer goroutines
		inject = func(topic, body []byte) error {
			mu.Lock()
			defer mu.Unlock()
			_, err := push.SendMessage(topic, body)
			return err
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
	return func() {
		cancel()
		<-done
		closeInjector()
		if err := bridge.Close(); err != nil {
			log.Error("close spool", "error", err)
		}
	}, nil
}
