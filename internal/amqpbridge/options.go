package amqpbridge

import (
	"net/url"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/spool"
)

// Options configure the bridge; the relay's configuration has validated them
// and filled in the defaults.
type Options struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://host:port/vhost.
	URL string
	// Exchange receives the bridged messages.
	Exchange string
	// DeclareExchange declares Exchange (durable topic) on every connect.
	DeclareExchange bool

	// TLS for amqps:// URLs. With ClientCert and ClientKey set the bridge
	// authenticates with SASL EXTERNAL (the certificate's subject).
	CACert, ClientCert, ClientKey string

	Heartbeat time.Duration
	// ConfirmWindow is the number of published but unconfirmed messages in flight.
	ConfirmWindow int
	// ConfirmTimeout is how long the oldest unconfirmed message may wait for its
	// confirm before the connection is considered broken and replaced.
	ConfirmTimeout             time.Duration
	ReconnectMin, ReconnectMax time.Duration

	// SpoolDir holds the on-disk spool; messages wait there until confirmed.
	SpoolDir string
	// SpoolMaxBytes bounds the spool; when it is full the oldest messages are dropped.
	SpoolMaxBytes int64
	// SpoolSync is when the spool forces its writes to the disk.
	SpoolSync         spool.SyncPolicy
	SpoolSyncInterval time.Duration
	// Budget is the relay's one byte budget; the hand-off to the spool is
	// charged to it. Nil: the hand-off has only its own bound.
	Budget *membudget.Budget

	Consume ConsumeOptions
}

// ConsumeOptions configure the optional reverse direction (RabbitMQ to
// ZeroMQ); it is off when Queue is empty.
type ConsumeOptions struct {
	Queue string
	// DeclareQueue declares Queue as a durable queue.
	DeclareQueue bool
	// Exchange the queue is bound to with BindingKeys, on every connect.
	Exchange    string
	BindingKeys []string
	// Prefetch is the number of unacknowledged deliveries the broker sends ahead.
	Prefetch int
}

// redactURL hides the password of an AMQP URL for messages and logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
