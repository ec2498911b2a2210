package fedmsgconf

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func captureLogger() (hclog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Warn}), &buf
}

func TestLoadShippedLayout(t *testing.T) {
	files, err := Files("testdata/fedmsg.d")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if want := []string{"base.py", "endpoints.py", "logging.py", "relay.py", "ssl.py"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("Files = %v, want %v", names, want)
	}
	log, warnings := captureLogger()
	cfg := Load(files, log)

	inbound, err := cfg.Addresses("relay_inbound")
	if want := []string{"tcp://busgateway01.example.org:9941", "tcp://busgateway01.vpn.example.org:3998"}; err != nil || !reflect.DeepEqual(inbound, want) {
		t.Errorf("relay_inbound = %v, %v; want %v", inbound, err, want)
	}
	confirm, err := cfg.Addresses("relay_inbound_confirm")
	if want := []string{"tcp://busgateway01.example.org:9942"}; err != nil || !reflect.DeepEqual(confirm, want) {
		t.Errorf("relay_inbound_confirm = %v, %v; want %v", confirm, err, want)
	}
	// endpoints.py and relay.py both define endpoints: merged, not replaced.
	outbound, err := cfg.Endpoint("relay_outbound")
	if want := []string{"tcp://busgateway01.example.org:3999"}; err != nil || !reflect.DeepEqual(outbound, want) {
		t.Errorf("relay_outbound = %v, %v; want %v", outbound, err, want)
	}
	if infra, _ := cfg.Endpoint("fedora-infrastructure"); len(infra) != 1 {
		t.Errorf("endpoints from endpoints.py lost in the merge: %v", cfg["endpoints"])
	}
	host, _ := os.Hostname()
	if got, want := cfg["this_host"], strings.SplitN(host, ".", 2)[0]; got != want {
		t.Errorf("this_host = %v, want %v", got, want)
	}
	if env, _ := cfg.String("environment", DefaultEnvironment); env != "prod" {
		t.Errorf("environment = %q, want prod", env)
	}
	if prefix, _ := cfg.String("topic_prefix", DefaultTopicPrefix); prefix != DefaultTopicPrefix {
		t.Errorf("topic_prefix = %q, want the default", prefix)
	}
	if _, ok := cfg["logging"].(map[string]any)["formatters"]; !ok {
		t.Errorf("logging.py not loaded: %v", cfg["logging"])
	}
	// ssl.py imports os: skipped as a whole, with a warning naming file:line.
	if _, ok := cfg["ssldir"]; ok {
		t.Error("ssl.py was partly applied; it must be skipped")
	}
	if w := warnings.String(); !strings.Contains(w, "testdata/fedmsg.d/ssl.py:3:8: unsupported import") {
		t.Errorf("warnings = %q, want one about ssl.py:3:8", w)
	}
}

func TestLoadOverrideOrder(t *testing.T) {
	files, err := Files("testdata/override.d")
	if err != nil {
		t.Fatal(err)
	}
	log, warnings := captureLogger()
	cfg := Load(files, log)
	cases := []struct {
		key  string
		got  any
		want any
	}{
		{"environment", cfg["environment"], "prod"},
		{"topic_prefix", cfg["topic_prefix"], "org.example"},
		{"endpoints", cfg["endpoints"], map[string]any{
			"relay_outbound": []any{"tcp://127.0.0.1:4002"},
			"a":              []any{"tcp://a:1"},
		}},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.key, tc.got, tc.want)
		}
	}
	if !strings.Contains(warnings.String(), "20-broken.py:") {
		t.Errorf("no warning for the broken file: %q", warnings.String())
	}
}

func TestFilesSingleAndMissing(t *testing.T) {
	files, err := Files("testdata/fedmsg.d/relay.py")
	if err != nil || len(files) != 1 {
		t.Errorf("Files(file) = %v, %v; want the file itself", files, err)
	}
	files, err = Files("testdata/does-not-exist")
	if err != nil || len(files) != 0 {
		t.Errorf("Files(missing) = %v, %v; want nothing, no error", files, err)
	}
}

func TestLocation(t *testing.T) {
	t.Setenv("FEDMSG_CONFIG", "")
	if got := Location(); got != DefaultDir {
		t.Errorf("Location() = %q, want %q", got, DefaultDir)
	}
	t.Setenv("FEDMSG_CONFIG", "/srv/fedmsg.d")
	if got := Location(); got != "/srv/fedmsg.d" {
		t.Errorf("Location() = %q, want FEDMSG_CONFIG", got)
	}
}

func TestAddressesTypes(t *testing.T) {
	cfg := Config{"s": "tcp://a:1", "n": int64(3), "l": []any{"tcp://a:1", int64(2)}}
	if got, err := cfg.Addresses("s"); err != nil || len(got) != 1 {
		t.Errorf("string: %v %v", got, err)
	}
	for _, key := range []string{"n", "l"} {
		if _, err := cfg.Addresses(key); err == nil {
			t.Errorf("Addresses(%q) accepted a non-string", key)
		}
	}
	if got := SplitAddresses("tcp://a:1, tcp://b:2", "", "tcp://c:3"); len(got) != 3 {
		t.Errorf("SplitAddresses = %v", got)
	}
}

func TestPick(t *testing.T) {
	fromConfig := func() ([]string, error) { return []string{"tcp://config:1"}, nil }
	none := func() ([]string, error) { return nil, nil }
	cases := []struct {
		name   string
		flags  []string
		env    string
		config func() ([]string, error)
		want   []string
	}{
		{"flag wins", []string{"tcp://flag:1,tcp://flag:2"}, "tcp://env:1", fromConfig, []string{"tcp://flag:1", "tcp://flag:2"}},
		{"env over config", nil, "tcp://env:1", fromConfig, []string{"tcp://env:1"}},
		{"config", nil, "", fromConfig, []string{"tcp://config:1"}},
		{"default", nil, "", none, []string{"tcp://default:1"}},
	}
	for _, tc := range cases {
		t.Setenv("FEDMSGCONF_TEST_ADDR", tc.env)
		got, err := Pick(tc.flags, "FEDMSGCONF_TEST_ADDR", tc.config, "tcp://default:1")
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Pick(%v, env=%q) = %v, %v; want %v", tc.name, tc.flags, tc.env, got, err, tc.want)
		}
	}
}
