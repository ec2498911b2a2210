package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
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

// wantProblem is one expected problem of a fixture, in order.
type wantProblem struct {
	line int
	key  string
	frag string
}

// checkFixture loads path and checks that its problems are exactly want, in
// order, each at its line; it returns the error Load gave.
func checkFixture(t *testing.T, path string, want []wantProblem) error {
	t.Helper()
	_, err := Load(path)
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("%s: want Problems, got %v", path, err)
	}
	if len(probs) != len(want) {
		t.Fatalf("%s: got %d problems, want %d:\n%v", path, len(probs), len(want), err)
	}
	for i, w := range want {
		p := probs[i]
		if p.File != path || p.Line != w.line || p.Key != w.key || !strings.Contains(p.Msg, w.frag) {
			t.Errorf("problem %d = %+v, want %s:%d key %s containing %q", i, p, path, w.line, w.key, w.frag)
		}
	}
	return err
}

// Every problem of a broken file is reported at once, each with its line.
func TestLoadReportsEveryProblemWithItsLine(t *testing.T) {
	checkFixture(t, "testdata/broken.yaml", []wantProblem{
		{1, "relay_inbound", "missing port"},
		{2, "relay_outbound", "unsupported transport"},
		{4, "frobnicate", "unknown key"},
		{5, "max_message_bytes", "cannot unmarshal"},
		{6, "topic_mismatch", "drop or pass"},
		{7, "outbound_hwm", "1 to 10000000"},
		{8, "log_level", "chatty"},
		{9, "metrics_address", "HOST:PORT"},
	})
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
		{"outbound engine", "\noutbound_engine: zeromq\n", 2, "outbound_engine", "go or libzmq"},
		{"no subscribers", "max_outbound_connections: 0\n", 1, "max_outbound_connections", "1 to 1000000"},
		{"log level", "log_level: chatty\n", 1, "log_level", "trace, debug"},
		{"relative log", "log_file: relay.log\n", 1, "log_file", "absolute"},
		{"metrics", "metrics_address: nonsense\n", 1, "metrics_address", "HOST:PORT"},
		{"mode", "monitoring_socket_mode: \"0999\"\n", 1, "monitoring_socket_mode", "octal"},
		{"sign without dir", "sign_messages: true\n", 0, "ssldir", "required"},
		{"allowlist", "topic_allowlist: [org.fedoraproject.]\n", 1, "topic_allowlist", "dotted"},
		{"negative duration", "drain_timeout: -5s\n", 1, "drain_timeout", "0s to 1h"},
		{"resume hold", "\nresume_hold: 2h\n", 2, "resume_hold", "0s to 1h"},
		{"relative state", "state_directory: var/lib/x\n", 1, "state_directory", "absolute"},
		{"not a mapping", "- a\n- b\n", 1, "", "mapping"},
		{"twice", "log_level: info\nlog_level: debug\n", 2, "log_level", "twice"},
		{"buffer below message", "max_message_bytes: 2097152\nbuffer_bytes: 1048576\n", 2, "buffer_bytes", "want max_message_bytes (2097152) to"},
		{"buffer huge", "buffer_bytes: 1099511627776\n", 1, "buffer_bytes", "to 68719476736"},
		{"old buffer name small", "\ninbound_buffer_bytes: 1000\n", 2, "inbound_buffer_bytes", "want max_message_bytes"},
		{"both buffer names", "buffer_bytes: 33554432\n\ninbound_buffer_bytes: 33554432\n", 3, "inbound_buffer_bytes", "which line 1 sets"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		if found, err := loadFinds(t, dir, tt.name, tt.yaml, tt.line, tt.key, tt.frag); !found {
			t.Errorf("%s: yaml %q: want line %d key %q containing %q; got:\n%v", tt.name, tt.yaml, tt.line, tt.key, tt.frag, err)
		}
	}
}

// loadFinds loads yaml from a file named after the case and reports whether
// one of its problems is at line, for key, containing frag.
func loadFinds(t *testing.T, dir, name, yaml string, line int, key, frag string) (bool, error) {
	t.Helper()
	path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var probs Problems
	if !errors.As(err, &probs) {
		return false, err
	}
	for _, p := range probs {
		if p.Line == line && p.Key == key && strings.Contains(p.Msg, frag) {
			return true, err
		}
	}
	return false, err
}

// buffer_bytes' old name still sets the budget, with a warning at its line;
// the new name alone warns of nothing.
func TestDeprecatedBufferName(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		yaml  string
		bytes int64
		warns []string
	}{
		{"log_level: info\ninbound_buffer_bytes: 33554432\n", 33554432, []string{"inbound_buffer_bytes:2: deprecated: use buffer_bytes instead"}},
		{"buffer_bytes: 8388608\n", 8388608, nil},
		{"log_level: info\n", DefaultBufferBytes, nil},
	} {
		path := filepath.Join(dir, "relay.yaml")
		if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			t.Fatalf("yaml %q: %v", tt.yaml, err)
		}
		var warns []string
		for _, w := range cfg.Warnings() {
			warns = append(warns, w.Key+":"+strconv.Itoa(w.Line)+": "+w.Msg)
		}
		if cfg.BufferBytes != tt.bytes || len(warns) != len(tt.warns) || len(warns) > 0 && !strings.HasPrefix(warns[0], tt.warns[0]) {
			t.Errorf("yaml %q: buffer_bytes %d, warnings %q; want %d, %q", tt.yaml, cfg.BufferBytes, warns, tt.bytes, tt.warns)
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
	os.WriteFile(good, []byte("amqp:\n  url: amqp://guest:guest@127.0.0.1:5672/%2F\n  spool_dir: "+dir+"\n  consume: {queue: q}\n"), 0o644)
	cfg, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.AMQP
	if !a.Enabled() || !a.Consuming() || a.Exchange != "zmq.topic" || a.ConfirmWindow != 1024 || a.Consume.Exchange != "amq.topic" || a.Consume.Prefetch != 100 {
		t.Errorf("amqp = %+v, want enabled with the defaults (exchange zmq.topic, confirm_window 1024, consume from amq.topic, prefetch 100)", a)
	}
}

// A problem inside a nested section is reported at its own line; an unknown
// nested key hides none of the others; a key set to 0 is not "unset".
func TestNestedProblemsKeepTheirLines(t *testing.T) {
	err := checkFixture(t, "testdata/broken-amqp.yaml", []wantProblem{
		{2, "amqp.spool_dir", "required"}, // not in the file: at its section's line
		{5, "amqp.bogus", "unknown key"},
		{6, "amqp.confirm_window", "0: must be 1..65535"},
		{8, "amqp.reconnect_max", "1s is below amqp.reconnect_min 2s"},
		{9, "amqp.ca_cert", "is not amqps://"},
		{10, "amqp.spool_max_bytes", "cannot unmarshal"},
		{13, "amqp.consume.exchange", "also amqp.exchange"},
		{14, "amqp.consume.frobnicate", "unknown key"},
		{15, "amqp.consume.prefetch", "0: must be 1..65535"},
		{16, "amqp.consume.binding_keys", "entry 1 is empty"},
	})
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the URL's password is in the problems:\n%v", err)
	}
}

func TestAMQPProblems(t *testing.T) {
	const (
		head  = "amqp:\n  url: amqp://guest:guest@localhost/\n  spool_dir: /var/spool/x\n" // lines 1-3
		spool = "  spool_dir: /var/spool/x\n"
	)
	tests := []struct {
		name string
		yaml string
		line int
		key  string
		frag string
	}{
		{"scheme", "amqp:\n  url: http://h/\n" + spool, 2, "amqp.url", `scheme "http"`},
		{"no host", "amqp:\n  url: amqp:///vhost\n" + spool, 2, "amqp.url", `"amqp:///vhost" has no host`},
		{"password hidden", "amqp:\n  url: amqp://u:secret@/\n" + spool, 2, "amqp.url", `"amqp://u:xxxxx@/" has no host`},
		{"cert without key", "amqp:\n  url: amqps://h/\n" + spool + "  client_cert: /c.crt\n", 4, "amqp.client_cert", "set both"},
		{"window zero", head + "  confirm_window: 0\n", 4, "amqp.confirm_window", "0: must be 1..65535"},
		{"window large", head + "  confirm_window: 70000\n", 4, "amqp.confirm_window", "70000: must be 1..65535"},
		{"heartbeat zero", head + "  heartbeat: 0s\n", 4, "amqp.heartbeat", "must be positive"},
		{"negative timeout", head + "  confirm_timeout: -1s\n", 4, "amqp.confirm_timeout", "-1s: must be positive"},
		{"tiny spool", head + "  spool_max_bytes: 10\n", 4, "amqp.spool_max_bytes", "10: must be at least 65536"},
		{"sync policy", head + "  spool_sync: sometimes\n", 4, "amqp.spool_sync", `"sometimes": want one of always, interval, never`},
		{"sync interval", head + "  spool_sync_interval: 0s\n", 4, "amqp.spool_sync_interval", "must be positive"},
		{"keys without queue", head + "  consume:\n    binding_keys: [a.#]\n", 4, "amqp.consume.queue", "required"},
		{"prefetch zero", head + "  consume: {queue: q, prefetch: 0}\n", 4, "amqp.consume.prefetch", "0: must be 1..65535"},
		{"bindings the topic filter refuses", "topic_allowlist: [org.fedoraproject.prod]\n" + head + "  consume: {queue: q, binding_keys: [org.fedoraproject.stg.#, org.centos.#]}\n", 5,
			"amqp.consume.binding_keys", "the relay would refuse every consumed message"},
		{"section not a mapping", "amqp: [1]\n", 1, "amqp", "must be a mapping"},
		{"consume not a mapping", head + "  consume: q\n", 4, "amqp.consume", "must be a mapping"},
		{"twice", head + "  url: amqp://other/\n", 4, "amqp.url", "twice"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		found, err := loadFinds(t, dir, tt.name, tt.yaml, tt.line, tt.key, tt.frag)
		if !found || err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: yaml %q: want line %d key %q containing %q and no password; got:\n%v", tt.name, tt.yaml, tt.line, tt.key, tt.frag, err)
		}
	}
}

// TestConsumeBindingsThatMayPass checks the topic filter check of
// amqp.consume.binding_keys on wildcards: only a filter no binding key can
// satisfy is a problem (it errs on the side of accepting).
func TestConsumeBindingsThatMayPass(t *testing.T) {
	prefixes := []string{"org.fedoraproject.prod"}
	for key, want := range map[string]bool{
		"org.fedoraproject.prod.git.receive": true,
		"org.fedoraproject.prod.#":           true,
		"org.fedoraproject.#":                true, // binds prod topics too
		"#":                                  true,
		"org.*.prod.#":                       true,
		"org.fedoraproject.stg.#":            false,
		"org.fedoraproject.prod":             true,
		"org.fedoraproject.prodx":            false, // whole dotted words, as the relay matches
		"org.fedoraproject.pro":              false,
		"*.centos.#":                         true, // conservative: only a literal start counts
	} {
		if got := mayPass(key, prefixes); got != want {
			t.Errorf("mayPass(%q, %v) = %v, want %v", key, prefixes, got, want)
		}
	}
}
