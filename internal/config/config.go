// Package config loads and validates the relay's YAML configuration.
//
// Loading goes defaults → file → validation in one place (Load). Every problem
// is collected with the file, line and offending value and reported together,
// so an operator fixes a broken file in one pass; unknown keys are errors.
// Key names follow fedmsg's where fedmsg has one (relay_inbound,
// relay_outbound, topic_prefix, sign_messages, ssldir, certnames, ...).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where packaged installs keep the configuration.
const DefaultPath = "/etc/fedmsg-relay/relay.yaml"

// Config is the validated runtime configuration of the relay.
type Config struct {
	// Path is the file the configuration was read from ("" for built-in defaults).
	Path string `yaml:"-"`

	RelayInbound        Endpoints `yaml:"relay_inbound"`
	RelayOutbound       Endpoints `yaml:"relay_outbound"`
	RelayInboundConfirm Endpoints `yaml:"relay_inbound_confirm"`

	// TopicPrefix, when set, restricts accepted topics to "<prefix>." (fedmsg's key).
	TopicPrefix string `yaml:"topic_prefix"`
	// TopicAllowlist restricts accepted topics to these dotted prefixes.
	TopicAllowlist []string `yaml:"topic_allowlist"`
	// TopicMismatch says what to do when the body's "topic" differs from frame 1.
	TopicMismatch string `yaml:"topic_mismatch"`

	MaxMessageBytes int64 `yaml:"max_message_bytes"`
	// BufferBytes is the one byte budget for everything the relay queues:
	// producers' messages, confirm requests, subscribers' queues and the
	// bridge's hand-off. The Go heap's soft limit follows it.
	BufferBytes int64 `yaml:"buffer_bytes"`
	// InboundBufferBytes is buffer_bytes' name from when the budget held
	// inbound only: still accepted, with a warning (Warnings).
	InboundBufferBytes int64 `yaml:"inbound_buffer_bytes"`
	// InboundEngine terminates inbound ZMTP in Go ("go": producers share
	// buffer_bytes with the rest of the relay) or in libzmq.
	InboundEngine         string `yaml:"inbound_engine"`
	MaxInboundConnections int    `yaml:"max_inbound_connections"`
	// OutboundEngine publishes from Go ("go": subscribers' queues within
	// the byte budget, drops counted per subscriber) or from libzmq's XPUB.
	OutboundEngine         string `yaml:"outbound_engine"`
	MaxOutboundConnections int    `yaml:"max_outbound_connections"`

	InboundHWM        int           `yaml:"inbound_hwm"`
	OutboundHWM       int           `yaml:"outbound_hwm"`
	HandshakeTimeout  time.Duration `yaml:"handshake_timeout"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	TCPKeepalive      bool          `yaml:"tcp_keepalive"`
	IPv6              bool          `yaml:"ipv6"`
	DrainTimeout      time.Duration `yaml:"drain_timeout"`
	// ResumeHold is the longest a restarted relay holds publishing for the
	// previous one's listeners to re-subscribe; 0 publishes at once.
	ResumeHold time.Duration `yaml:"resume_hold"`
	// StateDirectory keeps the subscription count across restarts; empty:
	// $STATE_DIRECTORY (systemd's StateDirectory=), else nothing is kept.
	StateDirectory string `yaml:"state_directory"`

	LogFile   string `yaml:"log_file"`
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// DropLogInterval bounds how often each drop reason is logged.
	DropLogInterval time.Duration `yaml:"drop_log_interval"`

	MetricsAddress string `yaml:"metrics_address"`

	MonitoringEndpoint   string        `yaml:"monitoring_endpoint"`
	MonitoringSocketMode FileMode      `yaml:"monitoring_socket_mode"`
	MonitoringInterval   time.Duration `yaml:"monitoring_interval"`

	SignMessages       bool                `yaml:"sign_messages"`
	SSLDir             string              `yaml:"ssldir"`
	CertNames          map[string]string   `yaml:"certnames"`
	ValidateSignatures bool                `yaml:"validate_signatures"`
	CACert             string              `yaml:"ca_cert"`
	CRL                string              `yaml:"crl"`
	RoutingPolicy      map[string][]string `yaml:"routing_policy"`
	RoutingNitpicky    bool                `yaml:"routing_nitpicky"`
	// CRLLocation is fedmsg's crl_location: a file, or an http(s) URL
	// downloaded into CRLCache; the CRL is refreshed once older than
	// CRLCacheExpiry or past its nextUpdate. crl is the same for a file.
	CRLLocation    string        `yaml:"crl_location"`
	CRLCache       string        `yaml:"crl_cache"`
	CRLCacheExpiry time.Duration `yaml:"crl_cache_expiry"`
	// CRLTLSCA holds the CAs trusted to serve an https:// CRLLocation.
	CRLTLSCA string `yaml:"crl_tls_ca"`
	// CRLStale says what a CRL past its nextUpdate does: accept (check
	// against it still) or refuse (every message, as fedmsg did).
	CRLStale string `yaml:"crl_stale"`

	// AMQP bridges every published message to RabbitMQ (off without amqp.url).
	AMQP AMQP `yaml:"amqp"`

	// lines maps each key the file sets, nested ones as "amqp.consume.queue",
	// to its line: for error messages, and to tell a key set to 0 from an unset one.
	lines map[string]int
}

// Default returns the built-in configuration: upstream fedmsg's loopback
// addresses, so that a new user can run the relay without root or a file.
func Default() *Config {
	return &Config{
		RelayInbound:           Endpoints{"tcp://127.0.0.1:2003"},
		RelayOutbound:          Endpoints{"tcp://127.0.0.1:4001"},
		TopicMismatch:          TopicMismatchDrop,
		MaxMessageBytes:        1 << 20,
		InboundEngine:          InboundEngineGo,
		BufferBytes:            DefaultBufferBytes,
		MaxInboundConnections:  1000,
		OutboundEngine:         EngineGo, // the one budget bounds subscribers' queues; throughput within noise of libzmq, less CPU (README)
		MaxOutboundConnections: 1000,
		InboundHWM:             10000,
		OutboundHWM:            10000,
		HandshakeTimeout:       10 * time.Second,
		HeartbeatInterval:      30 * time.Second,
		TCPKeepalive:           true,
		DrainTimeout:           5 * time.Second,
		ResumeHold:             2 * time.Second,
		LogLevel:               "info",
		LogFormat:              "text",
		DropLogInterval:        10 * time.Second,
		MonitoringInterval:     5 * time.Second,
		MonitoringSocketMode:   0o770,
		CertNames:              map[string]string{},
		CRLCacheExpiry:         time.Hour,
		CRLStale:               CRLStaleAccept,
		AMQP:                   defaultAMQP(),
	}
}

// DefaultBufferBytes is buffer_bytes' default, 16 MiB: what inbound alone
// had before the budget was shared, so no part of the relay may now hold
// more than it did. At 1 KiB a message that is some 16,000 messages in
// flight, 16 of the largest; test/hostile's proof (RSS at most 64 MiB over
// idle with every hostile peer at once) is made at this default.
const DefaultBufferBytes = 16 << 20

// deprecatedKeys maps each old key still accepted to the key that replaced it.
var deprecatedKeys = []struct{ old, replacement string }{
	{"inbound_buffer_bytes", "buffer_bytes"},
}

// Inbound engines (transport.EngineGo and EngineLibzmq; config does not
// import the transport).
const (
	InboundEngineGo     = "go"
	InboundEngineLibzmq = "libzmq"
)

// Engines of either side: the same two (inbound_engine, outbound_engine).
const (
	EngineGo     = InboundEngineGo
	EngineLibzmq = InboundEngineLibzmq
)

// Topic mismatch policies.
const (
	TopicMismatchDrop = "drop"
	TopicMismatchPass = "pass"
)

// What a stale CRL does (crl_stale).
const (
	CRLStaleAccept = "accept"
	CRLStaleRefuse = "refuse"
)

// CRLSource returns where the CRL comes from: crl_location or crl; "" for none.
func (c *Config) CRLSource() string {
	if c.CRLLocation != "" {
		return c.CRLLocation
	}
	return c.CRL
}

// Problem is one configuration error, located in the file.
type Problem struct {
	File string
	Line int // 0 when the problem has no single line
	Key  string
	Msg  string
}

func (p Problem) Error() string {
	loc := p.File
	if loc == "" {
		loc = "(defaults)"
	}
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, p.Line)
	}
	if p.Key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, p.Key, p.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, p.Msg)
}

// Problems is every error found in one configuration.
type Problems []Problem

func (ps Problems) Error() string {
	var b bytes.Buffer
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Load reads the file at path over the defaults and validates the result.
// An empty path yields the validated defaults. The returned error is a
// Problems value listing every problem found.
func Load(path string) (*Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, cfg.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg.Path = path
	// Values that failed to decode keep their defaults, so validating the
	// rest still finds its problems: all are reported together.
	probs := cfg.decode(data)
	cfg.applyDeprecated()
	if err := cfg.Validate(); err != nil {
		probs = append(probs, err.(Problems)...)
	}
	if len(probs) > 0 {
		sortProblems(probs)
		return nil, probs
	}
	return cfg, nil
}

func sortProblems(probs Problems) {
	sort.SliceStable(probs, func(i, j int) bool {
		if probs[i].Line != probs[j].Line {
			return probs[i].Line < probs[j].Line
		}
		return probs[i].Msg < probs[j].Msg
	})
}

func (c *Config) decode(data []byte) Problems {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Problems{{File: c.Path, Line: yamlErrorLine(err), Msg: err.Error()}}
	}
	if len(doc.Content) == 0 { // empty file: defaults
		return nil
	}
	c.lines = map[string]int{}
	return c.decodeSection("", doc.Content[0], reflect.ValueOf(c).Elem())
}

// decodeSection decodes a mapping into the struct dst key by key, recursing
// into nested sections, so that every problem keeps its own line and one bad
// value hides nothing else. Keys not in the file keep their defaults.
func (c *Config) decodeSection(prefix string, n *yaml.Node, dst reflect.Value) Problems {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" { // "amqp:" with nothing under it
		return nil
	}
	if n.Kind != yaml.MappingNode {
		what := "top level"
		if prefix != "" {
			what = strings.TrimSuffix(prefix, ".")
		}
		return Problems{{File: c.Path, Line: n.Line, Key: strings.TrimSuffix(prefix, "."), Msg: what + " must be a mapping of keys to values"}}
	}
	fields := yamlFields(dst.Type())
	var probs Problems
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := prefix + k.Value
		field, known := fields[k.Value]
		if !known {
			probs = append(probs, Problem{File: c.Path, Line: k.Line, Key: key, Msg: "unknown key"})
			continue
		}
		if _, dup := c.lines[key]; dup {
			probs = append(probs, Problem{File: c.Path, Line: k.Line, Key: key, Msg: "key given twice"})
			continue
		}
		c.lines[key] = k.Line
		fv := dst.Field(field)
		if isSection(fv.Type()) {
			probs = append(probs, c.decodeSection(key+".", v, fv)...)
			continue
		}
		// Decode into a fresh value so a bad one leaves the default in place.
		val := reflect.New(fv.Type())
		if err := v.Decode(val.Interface()); err != nil {
			probs = append(probs, Problem{File: c.Path, Line: v.Line, Key: key, Msg: cleanYAMLError(err)})
			continue
		}
		fv.Set(val.Elem())
	}
	return probs
}

// set reports whether the file sets key.
func (c *Config) set(key string) bool {
	_, ok := c.lines[key]
	return ok
}

// applyDeprecated gives a deprecated key's value to the key that replaced
// it, unless the file sets both (validateBufferBytes reports that).
func (c *Config) applyDeprecated() {
	if c.set("inbound_buffer_bytes") && !c.set("buffer_bytes") {
		c.BufferBytes = c.InboundBufferBytes
	}
}

// Warnings lists the deprecated keys the file sets, each at its line with
// the key to use instead: printed by --check-config and logged at start-up.
func (c *Config) Warnings() Problems {
	var warns Problems
	for _, d := range deprecatedKeys {
		if c.set(d.old) {
			warns = append(warns, c.problem(d.old, "deprecated: use %s instead (the same value)", d.replacement))
		}
	}
	return warns
}

// line returns the line of a key the file set, else that of its closest
// enclosing section the file set, else 0.
func (c *Config) line(key string) int {
	for {
		if l, ok := c.lines[key]; ok {
			return l
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
}

func (c *Config) problem(key, format string, args ...any) Problem {
	return Problem{File: c.Path, Line: c.line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks values and cross-field rules, returning Problems or nil.
func (c *Config) Validate() error {
	var probs Problems
	for _, check := range []func() []Problem{
		c.validateEndpoints,
		c.validateTopics,
		c.validateLimits,
		c.validateLogging,
		c.validateMetrics,
		c.validateMonitoring,
		c.validateSigning,
		c.validateAMQP,
	} {
		probs = append(probs, check()...)
	}
	if len(probs) > 0 {
		sortProblems(probs)
		return probs
	}
	return nil
}

// IsProblems reports whether err lists configuration problems (as opposed to,
// say, an unreadable file).
func IsProblems(err error) bool {
	var ps Problems
	return errors.As(err, &ps)
}
