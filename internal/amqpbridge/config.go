// Package amqpbridge copies every message the relay publishes onto a RabbitMQ
// exchange in the format fedora-messaging consumers read, and optionally
// injects messages from a RabbitMQ queue into the ZeroMQ bus.
//
// The relay's hot path only calls Bridge.Publish, which copies the message into
// an in-memory buffer and returns; a writer goroutine appends that buffer to an
// on-disk spool and the publisher goroutine reads the spool and publishes with
// pipelined publisher confirms. A message leaves the spool only once the
// broker confirmed it, so a broker outage or a relay restart loses nothing.
package amqpbridge

import (
	"fmt"
	"net/url"
	"time"
)

// Config is the relay configuration's `amqp:` section. The bridge is off when
// URL is empty.
type Config struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://host:port/vhost; the
	// vhost is the URL path, e.g. amqps://rabbitmq.fedoraproject.org/%2Fpubsub.
	URL string `yaml:"url"`
	// Exchange receives the bridged messages; Fedora's ZeroMQ bridge used "zmq.topic".
	Exchange string `yaml:"exchange"`
	// DeclareExchange declares Exchange (durable topic). Off by default because
	// production users have no configure permission.
	DeclareExchange bool `yaml:"declare_exchange"`

	// TLS for amqps:// URLs. With ClientCert and ClientKey set the bridge
	// authenticates with SASL EXTERNAL (the certificate's subject).
	CACert     string `yaml:"ca_cert"`
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`

	Heartbeat time.Duration `yaml:"heartbeat"`
	// ConfirmWindow is the number of published but unconfirmed messages in flight.
	ConfirmWindow int `yaml:"confirm_window"`
	// ConfirmTimeout is how long the oldest unconfirmed message may wait for its
	// confirm before the connection is considered broken and replaced.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	ReconnectMin   time.Duration `yaml:"reconnect_min"`
	ReconnectMax   time.Duration `yaml:"reconnect_max"`

	// SpoolDir holds the on-disk spool; messages wait there until confirmed.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolMaxBytes bounds the spool; when it is full the oldest messages are dropped.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`

	Consume ConsumeConfig `yaml:"consume"`
}

// ConsumeConfig is the optional reverse direction (RabbitMQ to ZeroMQ); it is
// off when Queue is empty.
type ConsumeConfig struct {
	Queue string `yaml:"queue"`
	// DeclareQueue declares Queue as a durable queue (needs configure permission).
	DeclareQueue bool `yaml:"declare_queue"`
	// Exchange the queue is bound to; default "amq.topic".
	Exchange string `yaml:"exchange"`
	// BindingKeys are bound (idempotently) on every connect when not empty.
	BindingKeys []string `yaml:"binding_keys"`
	// Prefetch is the number of unacknowledged deliveries the broker sends ahead.
	Prefetch int `yaml:"prefetch"`
}

// Defaults applied by SetDefaults.
const (
	DefaultExchange        = "zmq.topic"
	DefaultConsumeExchange = "amq.topic"
	DefaultHeartbeat       = 10 * time.Second
	DefaultConfirmWindow   = 1024
	DefaultConfirmTimeout  = 30 * time.Second
	DefaultReconnectMin    = 500 * time.Millisecond
	DefaultReconnectMax    = 30 * time.Second
	DefaultSpoolMaxBytes   = 1 << 30
	DefaultPrefetch        = 100
)

// Enabled reports whether the bridge is configured at all.
func (c *Config) Enabled() bool { return c.URL != "" }

// SetDefaults fills every unset field with its default.
func (c *Config) SetDefaults() {
	setDefault(&c.Exchange, DefaultExchange)
	setDefault(&c.Heartbeat, DefaultHeartbeat)
	setDefault(&c.ConfirmWindow, DefaultConfirmWindow)
	setDefault(&c.ConfirmTimeout, DefaultConfirmTimeout)
	setDefault(&c.ReconnectMin, DefaultReconnectMin)
	setDefault(&c.ReconnectMax, DefaultReconnectMax)
	setDefault(&c.SpoolMaxBytes, DefaultSpoolMaxBytes)
	setDefault(&c.Consume.Exchange, DefaultConsumeExchange)
	setDefault(&c.Consume.Prefetch, DefaultPrefetch)
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// Validate returns every problem in the configuration, each naming its key
// (amqp.<key>). Call SetDefaults first.
func (c Config) Validate() []error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	for _, check := range []func(Config) []error{
		validateURL, validateTLS, validateLimits, validateSpool, validateConsume,
	} {
		errs = append(errs, check(c)...)
	}
	return errs
}

func validateURL(c Config) []error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return []error{fmt.Errorf("amqp.url: %w", err)}
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return []error{fmt.Errorf("amqp.url: scheme %q: want amqp:// or amqps://", u.Scheme)}
	}
	if u.Host == "" {
		return []error{fmt.Errorf("amqp.url: %q has no host", redactURL(c.URL))}
	}
	return nil
}

func validateTLS(c Config) []error {
	var errs []error
	tlsSet := c.CACert != "" || c.ClientCert != "" || c.ClientKey != ""
	if u, err := url.Parse(c.URL); err == nil && tlsSet && u.Scheme != "amqps" {
		errs = append(errs, fmt.Errorf("amqp.ca_cert/client_cert/client_key: set, but amqp.url %q is not amqps://", redactURL(c.URL)))
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		errs = append(errs, fmt.Errorf("amqp.client_cert and amqp.client_key: set both or neither (client_cert %q, client_key %q)", c.ClientCert, c.ClientKey))
	}
	return errs
}

func validateLimits(c Config) []error {
	var errs []error
	positive := []struct {
		key   string
		value time.Duration
	}{
		{"heartbeat", c.Heartbeat},
		{"confirm_timeout", c.ConfirmTimeout},
		{"reconnect_min", c.ReconnectMin},
		{"reconnect_max", c.ReconnectMax},
	}
	for _, p := range positive {
		if p.value <= 0 {
			errs = append(errs, fmt.Errorf("amqp.%s: %s: must be positive", p.key, p.value))
		}
	}
	if c.ReconnectMax < c.ReconnectMin {
		errs = append(errs, fmt.Errorf("amqp.reconnect_max: %s is below amqp.reconnect_min %s", c.ReconnectMax, c.ReconnectMin))
	}
	if c.ConfirmWindow < 1 || c.ConfirmWindow > 65535 {
		errs = append(errs, fmt.Errorf("amqp.confirm_window: %d: must be 1..65535", c.ConfirmWindow))
	}
	return errs
}

func validateSpool(c Config) []error {
	var errs []error
	if c.SpoolDir == "" {
		errs = append(errs, fmt.Errorf("amqp.spool_dir: required when amqp.url is set"))
	}
	if c.SpoolMaxBytes < minSpoolBytes {
		errs = append(errs, fmt.Errorf("amqp.spool_max_bytes: %d: must be at least %d", c.SpoolMaxBytes, minSpoolBytes))
	}
	return errs
}

func validateConsume(c Config) []error {
	cc := c.Consume
	if cc.Queue == "" {
		if cc.DeclareQueue || len(cc.BindingKeys) > 0 {
			return []error{fmt.Errorf("amqp.consume.queue: required when amqp.consume.declare_queue or binding_keys are set")}
		}
		return nil
	}
	var errs []error
	if cc.Exchange == c.Exchange {
		errs = append(errs, fmt.Errorf("amqp.consume.exchange: %q is also amqp.exchange: bridged messages would come straight back", cc.Exchange))
	}
	if cc.Prefetch < 1 || cc.Prefetch > 65535 {
		errs = append(errs, fmt.Errorf("amqp.consume.prefetch: %d: must be 1..65535", cc.Prefetch))
	}
	for i, key := range cc.BindingKeys {
		if key == "" {
			errs = append(errs, fmt.Errorf("amqp.consume.binding_keys[%d]: empty", i))
		}
	}
	return errs
}

// redactURL hides the password of an AMQP URL for messages and logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
