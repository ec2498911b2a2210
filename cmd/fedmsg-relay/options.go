package main

import (
	"os"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge"
	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/relay"
	"github.com/fedora-infra/fedmsg-relay/internal/spool"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
)

// relayOptions maps the validated configuration to the relay's options.
func relayOptions(cfg *config.Config) relay.Options {
	return relay.Options{
		Options: transport.Options{
			Inbound:                cfg.RelayInbound,
			Confirm:                cfg.RelayInboundConfirm,
			Outbound:               cfg.RelayOutbound,
			Inject:                 cfg.AMQP.Consuming(),
			InboundEngine:          cfg.InboundEngine,
			BufferBytes:            cfg.BufferBytes,
			MaxInboundConnections:  cfg.MaxInboundConnections,
			OutboundEngine:         cfg.OutboundEngine,
			MaxOutboundConnections: cfg.MaxOutboundConnections,
			MaxMessageBytes:        cfg.MaxMessageBytes,
			InboundHWM:             cfg.InboundHWM,
			OutboundHWM:            cfg.OutboundHWM,
			HandshakeTimeout:       cfg.HandshakeTimeout,
			HeartbeatInterval:      cfg.HeartbeatInterval,
			TCPKeepalive:           cfg.TCPKeepalive,
			IPv6:                   cfg.IPv6,
		},
		DrainTimeout:         cfg.DrainTimeout,
		AllowedTopicPrefixes: cfg.AllowedTopicPrefixes(),
		PassTopicMismatch:    cfg.TopicMismatch == config.TopicMismatchPass,
		DropLogInterval:      cfg.DropLogInterval,
		Monitoring: relay.MonitoringOptions{
			Endpoint:   cfg.MonitoringEndpoint,
			SocketMode: os.FileMode(cfg.MonitoringSocketMode),
			Interval:   cfg.MonitoringInterval,
		},
	}
}

// spoolSync maps amqp.spool_sync (config.SpoolSyncPolicies) to the spool's policy.
var spoolSync = map[string]spool.SyncPolicy{
	"always": spool.SyncAlways, "interval": spool.SyncInterval, "never": spool.SyncNever,
}

// bridgeOptions maps the validated `amqp:` section to the bridge's options.
func bridgeOptions(a *config.AMQP, budget *membudget.Budget) amqpbridge.Options {
	return amqpbridge.Options{
		URL:               a.URL,
		Exchange:          a.Exchange,
		DeclareExchange:   a.DeclareExchange,
		CACert:            a.CACert,
		ClientCert:        a.ClientCert,
		ClientKey:         a.ClientKey,
		Heartbeat:         a.Heartbeat,
		ConfirmWindow:     a.ConfirmWindow,
		ConfirmTimeout:    a.ConfirmTimeout,
		ReconnectMin:      a.ReconnectMin,
		ReconnectMax:      a.ReconnectMax,
		SpoolDir:          a.SpoolDir,
		SpoolMaxBytes:     a.SpoolMaxBytes,
		SpoolSync:         spoolSync[a.SpoolSync],
		SpoolSyncInterval: a.SpoolSyncInterval,
		Budget:            budget,
		Consume: amqpbridge.ConsumeOptions{
			Queue:        a.Consume.Queue,
			DeclareQueue: a.Consume.DeclareQueue,
			Exchange:     a.Consume.Exchange,
			BindingKeys:  a.Consume.BindingKeys,
			Prefetch:     a.Consume.Prefetch,
		},
	}
}
