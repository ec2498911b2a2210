package config

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
)

// validateEndpoint checks one ZeroMQ endpoint the relay binds: tcp://HOST:PORT
// (IPv4, [IPv6], a host name, or * for all interfaces) or ipc://PATH.
func validateEndpoint(ep string) string {
	scheme, rest, ok := strings.Cut(ep, "://")
	if !ok {
		return "missing scheme: want tcp://HOST:PORT or ipc://PATH"
	}
	switch scheme {
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "want tcp://HOST:PORT (IPv6 as tcp://[::1]:PORT): " + err.Error()
		}
		if host == "" {
			return "missing host: use * for all interfaces"
		}
		if strings.Contains(host, ":") {
			if _, err := netip.ParseAddr(host); err != nil && host != "*" {
				return "bad IPv6 address " + strconv.Quote(host)
			}
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return "port must be a number from 1 to 65535 (ephemeral binds are not useful for a relay)"
		}
	case "ipc":
		if rest == "" {
			return "missing path after ipc://"
		}
		if !strings.HasPrefix(rest, "/") && !strings.HasPrefix(rest, "@") {
			return "ipc path must be absolute (or @abstract)"
		}
		if len(rest) > 107 { // sun_path is 108 bytes including NUL
			return "ipc path longer than 107 bytes"
		}
	case "inproc":
		// Useful in tests and embedding; nothing to check.
	default:
		return "unsupported transport " + strconv.Quote(scheme) + ": use tcp:// or ipc://"
	}
	return ""
}

func (c *Config) validateEndpoints() []Problem {
	var probs []Problem
	seen := map[string]string{}
	for _, group := range []struct {
		key      string
		eps      Endpoints
		required bool
	}{
		{"relay_inbound", c.RelayInbound, true},
		{"relay_outbound", c.RelayOutbound, true},
		{"relay_inbound_confirm", c.RelayInboundConfirm, false},
	} {
		if group.required && len(group.eps) == 0 {
			probs = append(probs, c.problem(group.key, "at least one endpoint is required"))
		}
		for _, ep := range group.eps {
			if msg := validateEndpoint(ep); msg != "" {
				probs = append(probs, c.problem(group.key, "%q: %s", ep, msg))
				continue
			}
			if other, dup := seen[ep]; dup {
				probs = append(probs, c.problem(group.key, "%q is also listed under %s", ep, other))
				continue
			}
			seen[ep] = group.key
		}
	}
	if c.IPv6 {
		return probs
	}
	for ep, key := range seen {
		if strings.HasPrefix(ep, "tcp://[") {
			probs = append(probs, c.problem(key, "%q is an IPv6 address: set ipv6: true", ep))
		}
	}
	return probs
}

func validTopicPrefix(p string) bool {
	return p != "" && utf8.ValidString(p) && !strings.HasPrefix(p, ".") && !strings.HasSuffix(p, ".")
}

func (c *Config) validateTopics() []Problem {
	var probs []Problem
	if c.TopicPrefix != "" && !validTopicPrefix(c.TopicPrefix) {
		probs = append(probs, c.problem("topic_prefix", "%q: want dotted words like org.fedoraproject", c.TopicPrefix))
	}
	for _, p := range c.TopicAllowlist {
		if !validTopicPrefix(p) {
			probs = append(probs, c.problem("topic_allowlist", "%q: want dotted words like org.fedoraproject.prod", p))
		}
	}
	if c.TopicMismatch != TopicMismatchDrop && c.TopicMismatch != TopicMismatchPass {
		probs = append(probs, c.problem("topic_mismatch", "%q: want drop or pass", c.TopicMismatch))
	}
	return probs
}

// AllowedTopicPrefixes merges topic_prefix into the allowlist; empty means all.
func (c *Config) AllowedTopicPrefixes() []string {
	if c.TopicPrefix == "" {
		return c.TopicAllowlist
	}
	return append([]string{c.TopicPrefix}, c.TopicAllowlist...)
}

func (c *Config) validateLimits() []Problem {
	var probs []Problem
	if c.MaxMessageBytes < 64 || c.MaxMessageBytes > 1<<30 {
		probs = append(probs, c.problem("max_message_bytes", "%d: want 64 to 1073741824", c.MaxMessageBytes))
	}
	if c.InboundEngine != InboundEngineGo && c.InboundEngine != InboundEngineLibzmq {
		probs = append(probs, c.problem("inbound_engine", "%q: want go or libzmq", c.InboundEngine))
	}
	probs = append(probs, c.validateBufferBytes()...)
	if c.MaxInboundConnections < 1 || c.MaxInboundConnections > 1_000_000 {
		probs = append(probs, c.problem("max_inbound_connections", "%d: want 1 to 1000000", c.MaxInboundConnections))
	}
	if c.OutboundEngine != EngineGo && c.OutboundEngine != EngineLibzmq {
		probs = append(probs, c.problem("outbound_engine", "%q: want go or libzmq", c.OutboundEngine))
	}
	if c.MaxOutboundConnections < 1 || c.MaxOutboundConnections > 1_000_000 {
		probs = append(probs, c.problem("max_outbound_connections", "%d: want 1 to 1000000", c.MaxOutboundConnections))
	}
	for key, hwm := range map[string]int{"inbound_hwm": c.InboundHWM, "outbound_hwm": c.OutboundHWM} {
		if hwm < 1 || hwm > 10_000_000 {
			probs = append(probs, c.problem(key, "%d: want 1 to 10000000 (0, unlimited, would let one slow peer exhaust memory)", hwm))
		}
	}
	for key, d := range map[string]interface{ Seconds() float64 }{
		"handshake_timeout":  c.HandshakeTimeout,
		"heartbeat_interval": c.HeartbeatInterval,
		"drain_timeout":      c.DrainTimeout,
		"resume_hold":        c.ResumeHold,
		"drop_log_interval":  c.DropLogInterval,
	} {
		if d.Seconds() < 0 || d.Seconds() > 3600 {
			probs = append(probs, c.problem(key, "%vs: want 0s to 1h", d.Seconds()))
		}
	}
	return probs
}

// maxBufferBytes bounds buffer_bytes at 64 GiB: a bus needing more in
// memory has a stuck consumer, not a burst, and the bridge spools to disk.
const maxBufferBytes = 64 << 30

func (c *Config) validateBufferBytes() []Problem {
	key := "buffer_bytes"
	switch {
	case c.set("buffer_bytes") && c.set("inbound_buffer_bytes"):
		return []Problem{c.problem("inbound_buffer_bytes", "the deprecated name of buffer_bytes, which line %d sets: keep only buffer_bytes", c.line("buffer_bytes"))}
	case c.set("inbound_buffer_bytes"):
		key = "inbound_buffer_bytes"
	}
	if c.BufferBytes < c.MaxMessageBytes || c.BufferBytes > maxBufferBytes {
		return []Problem{c.problem(key, "%d: want max_message_bytes (%d) to %d", c.BufferBytes, c.MaxMessageBytes, int64(maxBufferBytes))}
	}
	return nil
}

func (c *Config) validateLogging() []Problem {
	var probs []Problem
	if hclog.LevelFromString(c.LogLevel) == hclog.NoLevel {
		probs = append(probs, c.problem("log_level", "%q: want trace, debug, info, warn or error", c.LogLevel))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		probs = append(probs, c.problem("log_format", "%q: want text or json", c.LogFormat))
	}
	for key, path := range map[string]string{"log_file": c.LogFile, "state_directory": c.StateDirectory} {
		if path != "" && !filepath.IsAbs(path) {
			probs = append(probs, c.problem(key, "%q: want an absolute path", path))
		}
	}
	return probs
}

func (c *Config) validateMetrics() []Problem {
	if c.MetricsAddress == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(c.MetricsAddress); err != nil || port == "" {
		return []Problem{c.problem("metrics_address", "%q: want HOST:PORT such as 127.0.0.1:9940", c.MetricsAddress)}
	}
	return nil
}

func (c *Config) validateMonitoring() []Problem {
	var probs []Problem
	if c.MonitoringEndpoint != "" {
		if msg := validateEndpoint(c.MonitoringEndpoint); msg != "" {
			probs = append(probs, c.problem("monitoring_endpoint", "%q: %s", c.MonitoringEndpoint, msg))
		}
	}
	if c.MonitoringInterval < 100_000_000 { // 100ms
		probs = append(probs, c.problem("monitoring_interval", "%v: want at least 100ms", c.MonitoringInterval))
	}
	return probs
}

func (c *Config) validateSigning() []Problem {
	var probs []Problem
	if c.SignMessages {
		if c.SSLDir == "" {
			probs = append(probs, c.problem("ssldir", "required when sign_messages is true"))
		}
		if c.CertNames["signing_relay"] == "" {
			probs = append(probs, c.problem("certnames", "certnames.signing_relay is required when sign_messages is true"))
		}
	}
	if c.ValidateSignatures && c.CACert == "" {
		probs = append(probs, c.problem("ca_cert", "required when validate_signatures is true"))
	}
	probs = append(probs, c.validateCRL()...)
	remote := strings.HasPrefix(c.CRLLocation, "https://") || strings.HasPrefix(c.CRLLocation, "http://")
	files := map[string]string{"ssldir": c.SSLDir, "ca_cert": c.CACert, "crl": c.CRL, "crl_tls_ca": c.CRLTLSCA}
	if !remote {
		files["crl_location"] = c.CRLLocation
	}
	for key, path := range files {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			probs = append(probs, c.problem(key, "%v", err))
		}
	}
	return probs
}

func (c *Config) validateCRL() []Problem {
	var probs []Problem
	if c.CRL != "" && c.CRLLocation != "" {
		probs = append(probs, c.problem("crl_location", "set crl or crl_location, not both"))
	}
	if scheme, _, ok := strings.Cut(c.CRLLocation, "://"); ok {
		switch {
		case scheme != "https" && scheme != "http":
			probs = append(probs, c.problem("crl_location", "%q: want a file, https:// or http:// URL", c.CRLLocation))
		case c.CRLCache == "":
			probs = append(probs, c.problem("crl_cache", "required when crl_location is a URL"))
		case !filepath.IsAbs(c.CRLCache):
			probs = append(probs, c.problem("crl_cache", "%q: want an absolute path", c.CRLCache))
		}
	}
	if c.CRLCacheExpiry < 0 {
		probs = append(probs, c.problem("crl_cache_expiry", "%v: want 0 (only past nextUpdate) or more", c.CRLCacheExpiry))
	}
	if c.CRLStale != CRLStaleAccept && c.CRLStale != CRLStaleRefuse {
		probs = append(probs, c.problem("crl_stale", "%q: want accept or refuse", c.CRLStale))
	}
	return probs
}
