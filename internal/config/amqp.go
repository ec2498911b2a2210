package config

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

// AMQP is the `amqp:` section: bridge every published message to RabbitMQ in
// fedora-messaging's format. The bridge is off when URL is empty.
type AMQP struct {
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
	// confirm (and a write to the broker may stall) before the connection is replaced.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	ReconnectMin   time.Duration `yaml:"reconnect_min"`
	ReconnectMax   time.Duration `yaml:"reconnect_max"`

	// SpoolDir holds the on-disk spool; messages wait there until confirmed.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolMaxBytes bounds the spool; when it is full the oldest messages are dropped.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`
	// SpoolSync is when spooled messages are forced to the disk: "always"
	// (every write), "interval" (every SpoolSyncInterval) or "never" (the
	// kernel's write-back). It decides what a host crash loses.
	SpoolSync         string        `yaml:"spool_sync"`
	SpoolSyncInterval time.Duration `yaml:"spool_sync_interval"`

	Consume AMQPConsume `yaml:"consume"`
}

// AMQPConsume is `amqp.consume`, the optional reverse direction (RabbitMQ to
// ZeroMQ); it is off when Queue is empty.
type AMQPConsume struct {
	Queue string `yaml:"queue"`
	// DeclareQueue declares Queue as a durable queue (needs configure permission).
	DeclareQueue bool `yaml:"declare_queue"`
	// Exchange the queue is bound to.
	Exchange string `yaml:"exchange"`
	// BindingKeys are bound (idempotently) on every connect when not empty.
	BindingKeys []string `yaml:"binding_keys"`
	// Prefetch is the number of unacknowledged deliveries the broker sends ahead.
	Prefetch int `yaml:"prefetch"`
}

// SpoolSyncPolicies are the values of amqp.spool_sync.
var SpoolSyncPolicies = []string{"always", "interval", "never"}

// minSpoolBytes keeps the spool's segments (a sixteenth of it each) useful.
const minSpoolBytes = 64 << 10

func defaultAMQP() AMQP {
	return AMQP{
		Exchange:          "zmq.topic",
		Heartbeat:         10 * time.Second,
		ConfirmWindow:     1024,
		ConfirmTimeout:    30 * time.Second,
		ReconnectMin:      500 * time.Millisecond,
		ReconnectMax:      30 * time.Second,
		SpoolMaxBytes:     1 << 30,
		SpoolSync:         "interval",
		SpoolSyncInterval: 200 * time.Millisecond,
		Consume:           AMQPConsume{Exchange: "amq.topic", Prefetch: 100},
	}
}

// Enabled reports whether the bridge is configured at all.
func (a *AMQP) Enabled() bool { return a.URL != "" }

// Consuming reports whether the bridge also injects a queue into the bus.
func (a *AMQP) Consuming() bool { return a.Enabled() && a.Consume.Queue != "" }

func (c *Config) validateAMQP() []Problem {
	if !c.AMQP.Enabled() {
		return nil
	}
	var probs []Problem
	for _, check := range []func() []Problem{
		c.validateAMQPURL, c.validateAMQPTLS, c.validateAMQPLimits, c.validateAMQPSpool, c.validateAMQPConsume,
	} {
		probs = append(probs, check()...)
	}
	return probs
}

func (c *Config) validateAMQPURL() []Problem {
	u, err := url.Parse(c.AMQP.URL)
	if err != nil {
		// url's error quotes the whole URL, password included: say only what is wrong.
		return []Problem{c.problem("amqp.url", "not a URL")}
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return []Problem{c.problem("amqp.url", "scheme %q: want amqp:// or amqps://", u.Scheme)}
	}
	if u.Host == "" {
		return []Problem{c.problem("amqp.url", "%q has no host", u.Redacted())}
	}
	return nil
}

func (c *Config) validateAMQPTLS() []Problem {
	a := &c.AMQP
	var probs []Problem
	if u, err := url.Parse(a.URL); err == nil && u.Scheme != "amqps" {
		for key, path := range map[string]string{"amqp.ca_cert": a.CACert, "amqp.client_cert": a.ClientCert, "amqp.client_key": a.ClientKey} {
			if path != "" {
				probs = append(probs, c.problem(key, "set, but amqp.url %q is not amqps://", u.Redacted()))
			}
		}
	}
	if (a.ClientCert == "") != (a.ClientKey == "") {
		probs = append(probs, c.problem("amqp.client_cert", "set both amqp.client_cert and amqp.client_key or neither (client_cert %q, client_key %q)", a.ClientCert, a.ClientKey))
	}
	return probs
}

func (c *Config) validateAMQPLimits() []Problem {
	a := &c.AMQP
	var probs []Problem
	for _, p := range []struct {
		key   string
		value time.Duration
	}{
		{"amqp.heartbeat", a.Heartbeat},
		{"amqp.confirm_timeout", a.ConfirmTimeout},
		{"amqp.reconnect_min", a.ReconnectMin},
		{"amqp.reconnect_max", a.ReconnectMax},
	} {
		if p.value <= 0 {
			probs = append(probs, c.problem(p.key, "%s: must be positive", p.value))
		}
	}
	if a.ReconnectMax < a.ReconnectMin {
		probs = append(probs, c.problem("amqp.reconnect_max", "%s is below amqp.reconnect_min %s", a.ReconnectMax, a.ReconnectMin))
	}
	if a.ConfirmWindow < 1 || a.ConfirmWindow > 65535 {
		probs = append(probs, c.problem("amqp.confirm_window", "%d: must be 1..65535", a.ConfirmWindow))
	}
	return probs
}

func (c *Config) validateAMQPSpool() []Problem {
	var probs []Problem
	if c.AMQP.SpoolDir == "" {
		probs = append(probs, c.problem("amqp.spool_dir", "required when amqp.url is set"))
	}
	if c.AMQP.SpoolMaxBytes < minSpoolBytes {
		probs = append(probs, c.problem("amqp.spool_max_bytes", "%d: must be at least %d", c.AMQP.SpoolMaxBytes, minSpoolBytes))
	}
	if !slices.Contains(SpoolSyncPolicies, c.AMQP.SpoolSync) {
		probs = append(probs, c.problem("amqp.spool_sync", "%q: want one of %s", c.AMQP.SpoolSync, strings.Join(SpoolSyncPolicies, ", ")))
	}
	if c.AMQP.SpoolSyncInterval <= 0 {
		probs = append(probs, c.problem("amqp.spool_sync_interval", "%s: must be positive", c.AMQP.SpoolSyncInterval))
	}
	return probs
}

func (c *Config) validateAMQPConsume() []Problem {
	cc := &c.AMQP.Consume
	if cc.Queue == "" {
		if cc.DeclareQueue || len(cc.BindingKeys) > 0 {
			return []Problem{c.problem("amqp.consume.queue", "required when amqp.consume.declare_queue or binding_keys are set")}
		}
		return nil
	}
	var probs []Problem
	if cc.Exchange == c.AMQP.Exchange {
		probs = append(probs, c.problem("amqp.consume.exchange", "%q is also amqp.exchange: bridged messages would come straight back", cc.Exchange))
	}
	if cc.Prefetch < 1 || cc.Prefetch > 65535 {
		probs = append(probs, c.problem("amqp.consume.prefetch", "%d: must be 1..65535", cc.Prefetch))
	}
	for i, key := range cc.BindingKeys {
		if key == "" {
			probs = append(probs, c.problem("amqp.consume.binding_keys", "entry %d is empty", i))
		}
	}
	if prefixes := c.AllowedTopicPrefixes(); len(prefixes) > 0 && len(cc.BindingKeys) > 0 &&
		!slices.ContainsFunc(cc.BindingKeys, func(key string) bool { return mayPass(key, prefixes) }) {
		probs = append(probs, c.problem("amqp.consume.binding_keys", "%s: no topic they bind can pass topic_prefix/topic_allowlist %s; the relay would refuse every consumed message",
			strings.Join(cc.BindingKeys, ", "), strings.Join(prefixes, ", ")))
	}
	return probs
}

// mayPass reports whether a routing key matched by an AMQP binding key (with
// its * and # wildcards) can pass one of the relay's dotted topic prefixes:
// the relay publishes a consumed message under its routing key.
func mayPass(bindingKey string, prefixes []string) bool {
	literal, wild := bindingKey, false
	if i := strings.IndexAny(bindingKey, "*#"); i >= 0 {
		literal, wild = bindingKey[:i], true
	}
	return slices.ContainsFunc(prefixes, func(p string) bool {
		return literal == p || strings.HasPrefix(literal, p+".") || wild && strings.HasPrefix(p+".", literal)
	})
}
