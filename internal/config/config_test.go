package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if got := []string(cfg.RelayInbound); len(got) != 1 || got[0] != "tcp://127.0.0.1:2003" {
		t.Errorf("relay_inbound default = %v", got)
	}
	if got := []string(cfg.RelayOutbound); len(got) != 1 || got[0] != "tcp://127.0.0.1:4001" {
		t.Errorf("relay_outbound default = %v", got)
	}
}

func TestLoadProduction(t *testing.T) {
	cfg, err := Load("testdata/production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.RelayInbound, ","); got != "tcp://*:9941,tcp://*:3998" {
		t.Errorf("relay_inbound = %s", got)
	}
	if got := strings.Join(cfg.RelayOutbound, ","); got != "tcp://*:3999" {
		t.Errorf("relay_outbound (scalar form) = %s", got)
	}
	if cfg.MonitoringSocketMode != 0o770 || cfg.DrainTimeout != 3*time.Second || cfg.MaxMessageBytes != 524288 {
		t.Errorf("mode=%o drain=%v max=%d", cfg.MonitoringSocketMode, cfg.DrainTimeout, cfg.MaxMessageBytes)
	}
	if got := cfg.AllowedTopicPrefixes(); len(got) != 1 || got[0] != "org.fedoraproject" {
		t.Errorf("allowed prefixes = %v", got)
	}
}

// Every problem of a broken file is reported at once, each with its line.
func TestLoadReportsEveryProblemWithItsLine(t *testing.T) {
	_, err := Load("testdata/broken.yaml")
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("want Problems, got %v", err)
	}
	want := []struct {
		line int
		key  string
		frag string
	}{
		{1, "relay_inbound", "missing port"},
		{2, "relay_outbound", "unsupported transport"},
		{4, "frobnicate", "unknown key"},
		{5, "max_message_bytes", "cannot unmarshal"},
		{6, "topic_mismatch", "drop or pass"},
		{7, "outbound_hwm", "1 to 10000000"},
		{8, "log_level", "chatty"},
		{9, "metrics_address", "HOST:PORT"},
	}
	if len(probs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(probs), len(want), err)
	}
	for i, w := range want {
		p := probs[i]
		if p.Line != w.line || p.Key != w.key || !strings.Contains(p.Msg, w.frag) || p.File != "testdata/broken.yaml" {
			t.Errorf("problem %d = %+v, want line %d key %s containing %q", i, p, w.line, w.key, w.frag)
		}
	}
}

func TestValidationProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		key  string
		frag string
	}{
		{"no port", "relay_inbound: tcp://127.0.0.1\n", 1, "relay_inbound", "HOST:PORT"},
		{"bad scheme", "relay_outbound:\n  - udp://127.0.0.1:4001\n", 1, "relay_outbound", "unsupported transport"},
		{"port range", "relay_inbound: tcp://*:70000\n", 1, "relay_inbound", "1 to 65535"},
		{"relative ipc", "relay_inbound: ipc://relay.sock\n", 1, "relay_inbound", "absolute"},
		{"duplicate bind", "relay_inbound: tcp://*:4001\nrelay_outbound: tcp://*:4001\n", 2, "relay_outbound", "also listed"},
		{"ipv6 off", "relay_inbound: tcp://[::1]:2003\n", 1, "relay_inbound", "ipv6: true"},
		{"mismatch policy", "\n\ntopic_mismatch: explode\n", 3, "topic_mismatch", "drop or pass"},
		{"hwm zero", "outbound_hwm: 0\n", 1, "outbound_hwm", "1 to 10000000"},
		{"tiny max", "max_message_bytes: 10\n", 1, "max_message_bytes", "64 to"},
		{"log level", "log_level: chatty\n", 1, "log_level", "trace, debug"},
		{"relative log", "log_file: relay.log\n", 1, "log_file", "absolute"},
		{"metrics", "metrics_address: nonsense\n", 1, "metrics_address", "HOST:PORT"},
		{"mode", "monitoring_socket_mode: \"0999\"\n", 1, "monitoring_socket_mode", "octal"},
		{"sign without dir", "sign_messages: true\n", 0, "ssldir", "required"},
		{"allowlist", "topic_allowlist: [org.fedoraproject.]\n", 1, "topic_allowlist", "dotted"},
		{"negative duration", "drain_timeout: -5s\n", 1, "drain_timeout", "0s to 1h"},
		{"not a mapping", "- a\n- b\n", 1, "", "mapping"},
		{"twice", "log_level: info\nlog_level: debug\n", 2, "log_level", "twice"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
		if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		var probs Problems
		if !errors.As(err, &probs) {
			t.Errorf("%s: yaml %q: want Problems, got %v", tt.name, tt.yaml, err)
			continue
		}
		found := false
		for _, p := range probs {
			if p.Line == tt.line && p.Key == tt.key && strings.Contains(p.Msg, tt.frag) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: yaml %q: want line %d key %q containing %q; got:\n%v", tt.name, tt.yaml, tt.line, tt.key, tt.frag, err)
		}
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if err == nil || IsProblems(err) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want a not-exist read error, got %v", err)
	}
}

func TestAMQPSection(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("amqp:\n  url: amqp://guest:guest@127.0.0.1:5672/%2F\n  spool_dir: "+dir+"\n"), 0o644)
	cfg, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.AMQP.Enabled() || cfg.AMQP.Exchange != "zmq.topic" {
		t.Errorf("amqp = %+v, want enabled with the default exchange zmq.topic", cfg.AMQP)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("log_level: info\namqp:\n  url: http://example\n  bogus: 1\n"), 0o644)
	_, err = Load(bad)
	if err == nil || !strings.Contains(err.Error(), "bogus") || !strings.Contains(err.Error(), "amqp") {
		t.Fatalf("want unknown nested key and a bad url reported, got %v", err)
	}
}
