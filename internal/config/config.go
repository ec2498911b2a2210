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
	"sort"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge"
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

	MaxMessageBytes   int64         `yaml:"max_message_bytes"`
	InboundHWM        int           `yaml:"inbound_hwm"`
	OutboundHWM       int           `yaml:"outbound_hwm"`
	HandshakeTimeout  time.Duration `yaml:"handshake_timeout"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	TCPKeepalive      bool          `yaml:"tcp_keepalive"`
	IPv6              bool          `yaml:"ipv6"`
	DrainTimeout      time.Duration `yaml:"drain_timeout"`

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

	// AMQP bridges every published message to RabbitMQ (off without amqp.url).
	AMQP amqpbridge.Config `yaml:"amqp"`

	// lines maps each top-level key to its line in the file, for error messages.
	lines map[string]int
}

// Default returns the built-in configuration: upstream fedmsg's loopback
// addresses, so that a new user can run the relay without root or a file.
func Default() *Config {
	return &Config{
		RelayInbound:         Endpoints{"tcp://127.0.0.1:2003"},
		RelayOutbound:        Endpoints{"tcp://127.0.0.1:4001"},
		TopicMismatch:        TopicMismatchDrop,
		MaxMessageBytes:      1 << 20,
		InboundHWM:           10000,
		OutboundHWM:          10000,
		HandshakeTimeout:     10 * time.Second,
		HeartbeatInterval:    30 * time.Second,
		TCPKeepalive:         true,
		DrainTimeout:         5 * time.Second,
		LogLevel:             "info",
		LogFormat:            "text",
		DropLogInterval:      10 * time.Second,
		MonitoringInterval:   5 * time.Second,
		MonitoringSocketMode: 0o770,
		CertNames:            map[string]string{},
	}
}

// Topic mismatch policies.
const (
	TopicMismatchDrop = "drop"
	TopicMismatchPass = "pass"
)

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
	if cfg.AMQP.Enabled() {
		cfg.AMQP.SetDefaults()
	}
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

// knownKeys are the top-level keys, taken from the struct's yaml tags.
var knownKeys = func() map[string]bool {
	keys := map[string]bool{}
	for _, name := range yamlFieldNames(Config{}) {
		keys[name] = true
	}
	return keys
}()

func (c *Config) decode(data []byte) Problems {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Problems{{File: c.Path, Line: yamlErrorLine(err), Msg: err.Error()}}
	}
	if len(doc.Content) == 0 { // empty file: defaults
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return Problems{{File: c.Path, Line: root.Line, Msg: "top level must be a mapping of keys to values"}}
	}
	c.lines = map[string]int{}
	var probs Problems
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if !knownKeys[k.Value] {
			probs = append(probs, Problem{File: c.Path, Line: k.Line, Key: k.Value, Msg: "unknown key"})
			continue
		}
		if _, dup := c.lines[k.Value]; dup {
			probs = append(probs, Problem{File: c.Path, Line: k.Line, Key: k.Value, Msg: "key given twice"})
			continue
		}
		c.lines[k.Value] = k.Line
		// Decode each key on its own so that one bad value does not hide the others.
		if err := decodeStrict(k, v, c); err != nil {
			probs = append(probs, Problem{File: c.Path, Line: v.Line, Key: k.Value, Msg: cleanYAMLError(err)})
		}
	}
	return probs
}

// decodeStrict decodes one key's value into c, rejecting unknown keys in
// nested sections too (yaml.Node.Decode alone would ignore them).
func decodeStrict(k, v *yaml.Node, c *Config) error {
	single := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{k, v}}
	raw, err := yaml.Marshal(single)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	return dec.Decode(c)
}

// line returns the line of a top-level key, or 0.
func (c *Config) line(key string) int { return c.lines[key] }

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
