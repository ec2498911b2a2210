package fedmsgconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
)

// issueKeys are the keys the tools use (issue 11): they must come out of
// every config exactly as fedmsg's own exec-and-merge gives them.
var issueKeys = []string{
	"relay_inbound", "relay_inbound_confirm", "endpoints", "topic_prefix", "environment",
	"sign_messages", "validate_signatures", "ssldir", "certnames", "cert_prefix",
	"crypto_backend", "ca_cert_location", "crl_location", "routing_policy", "routing_nitpicky",
}

// fedmsgReference is fedmsg.config's load written out again, independently
// of evaluate.py: exec each file in a fresh namespace, merge its `config`
// with _recursive_update. It prints the requested keys as JSON.
const fedmsgReference = `
import json, os, sys

def _recursive_update(d1, d2):
    for k in set(d1).intersection(d2):
        if isinstance(d1[k], dict) and isinstance(d2[k], dict):
            d1[k] = _recursive_update(d1[k], d2[k])
        else:
            d1[k] = d2[k]
    for k in set(d2).difference(d1):
        d1[k] = d2[k]
    return d1

location, keys = sys.argv[1], sys.argv[2:]
if os.path.isdir(location):
    names = sorted(os.path.join(location, f) for f in os.listdir(location) if f.endswith('.py'))
else:
    names = [location]
config = {}
for fname in names:
    if os.path.isfile(fname):
        variables = {}
        with open(fname) as f:
            exec(compile(f.read(), fname, 'exec'), variables)
        config = _recursive_update(config, variables['config'])
json.dump(dict((k, config[k]) for k in keys if k in config), sys.stdout)
`

// pythonReference returns fedmsgReference's values for keys at location.
func pythonReference(t *testing.T, location string, keys []string) map[string]any {
	t.Helper()
	python := clienttest.Require(t, clienttest.Python)
	cmd := exec.Command(python, append([]string{"-c", fedmsgReference, location}, keys...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reference: %v\n%s", err, stderr.String())
	}
	var ref map[string]any
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("reference output %q: %v", out, err)
	}
	return ref
}

// asJSON turns v into what encoding/json reads back, to compare with the
// reference's JSON.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%#v: %v", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// assertMatchesFedmsg compares cfg with fedmsg's exec-and-merge of
// location, key by key.
func assertMatchesFedmsg(t *testing.T, location string, cfg Config, keys []string) {
	t.Helper()
	ref := pythonReference(t, location, keys)
	for _, key := range keys {
		want, inRef := ref[key]
		got, inCfg := cfg[key]
		if inRef != inCfg {
			t.Errorf("%s: key %s present in ours %v, in fedmsg's %v", location, key, inCfg, inRef)
			continue
		}
		if g := asJSON(t, got); !reflect.DeepEqual(g, want) {
			t.Errorf("%s: %s\n  ours    %v\n  fedmsg  %v", location, key, g, want)
		}
	}
}

// noPython is a loader for directories that must never start Python.
func noPython(t *testing.T) loader {
	return loader{
		python: func() (string, error) {
			t.Error("Python was looked for on a directory of literals")
			return "", errors.New("no python3 in this test")
		},
		timeout: time.Minute,
		log:     clienttest.Logger(t),
	}
}

// withPython is the loader LoadFrom uses, with a longer timeout for a
// loaded machine.
func withPython(t *testing.T) loader {
	clienttest.Require(t, clienttest.Python)
	return loader{python: findPython, timeout: time.Minute, log: clienttest.Logger(t)}
}

func load(t *testing.T, l loader, location string) (Config, error) {
	t.Helper()
	files, err := Files(location)
	if err != nil {
		t.Fatal(err)
	}
	return l.load(location, files)
}

func TestLoadLiteralDirWithoutPython(t *testing.T) {
	files, err := Files("testdata/literal.d")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if want := []string{"base.py", "endpoints.py", "logging.py", "relay.py"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("Files = %v, want %v", names, want)
	}
	cfg, err := noPython(t).load("testdata/literal.d", files)
	if err != nil {
		t.Fatal(err)
	}
	inbound, err := cfg.Addresses("relay_inbound")
	if want := []string{"tcp://busgateway01.example.org:9941", "tcp://busgateway01.vpn.example.org:3998"}; err != nil || !reflect.DeepEqual(inbound, want) {
		t.Errorf("relay_inbound = %v, %v; want %v", inbound, err, want)
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
	if got := cfg["zmq_linger"]; got != int64(1000) {
		t.Errorf("zmq_linger = %#v, want int64(1000)", got)
	}
	assertMatchesFedmsg(t, "testdata/literal.d", cfg, append(issueKeys, "this_host", "logging", "post_init_sleep"))
}

// TestLoadFedoraShapes reads files written as Fedora's Ansible templates
// wrote them (variables, % and .format, concatenation, dict([...] + [...]),
// imports, a class and functions): the literal parser cannot, Python does,
// and every key the tools use equals fedmsg's own result.
func TestLoadFedoraShapes(t *testing.T) {
	cfg, err := load(t, withPython(t), "testdata/fedora.d")
	if err != nil {
		t.Fatal(err)
	}
	assertMatchesFedmsg(t, "testdata/fedora.d", cfg, issueKeys)

	// Spot checks, so that a reference gone wrong cannot hide a wrong read.
	inbound, err := cfg.Addresses("relay_inbound")
	if want := []string{"tcp://busgateway01.iad2.example.org:9941", "tcp://busgateway01.vpn.example.org:3998"}; err != nil || !reflect.DeepEqual(inbound, want) {
		t.Errorf("relay_inbound = %v, %v; want %v", inbound, err, want)
	}
	host, _ := os.Hostname()
	short := strings.SplitN(host, ".", 2)[0]
	certnames, err := cfg.StringMap("certnames")
	if err != nil || certnames["shell."+short] != "shell-"+host || certnames["scm.pkgs01"] != "scm-pkgs01.iad2.example.org" {
		t.Errorf("certnames = %v, %v", certnames, err)
	}
	policy, err := cfg.ListMap("routing_policy")
	if want := []string{"scm-pkgs01.iad2.example.org"}; err != nil || !reflect.DeepEqual(policy["org.fedoraproject.prod.git.receive"], want) {
		t.Errorf("routing_policy = %v, %v", policy, err)
	}
	for key, want := range map[string]any{
		"sign_messages": true, "routing_nitpicky": false, "zmq_linger": int64(2000),
		"post_init_sleep": 0.5, "crl_cache_expiry": int64(86400),
	} {
		if got := cfg[key]; got != want {
			t.Errorf("%s = %#v, want %#v", key, got, want)
		}
	}
	// The filter class in logging.py is not data: it arrives as its repr.
	filter := cfg["logging"].(map[string]any)["filters"].(map[string]any)["context"].(map[string]any)["()"]
	if s, ok := filter.(string); !ok || !strings.Contains(s, "ContextInjector") {
		t.Errorf("logging filter class = %#v, want its repr", filter)
	}
}

func TestLoadFromSingleFile(t *testing.T) {
	clienttest.Require(t, clienttest.Python)
	cfg, err := LoadFrom("testdata/literal.d", "testdata/fedora.d/ssl.py", clienttest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg["relay_inbound"]; ok {
		t.Error("--config-filename read the directory too")
	}
	assertMatchesFedmsg(t, "testdata/fedora.d/ssl.py", cfg, issueKeys)
}

func TestLoadOverrideOrder(t *testing.T) {
	cfg, err := load(t, noPython(t), "testdata/override.d")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key  string
		want any
	}{
		{"environment", "prod"},
		{"topic_prefix", "org.example"},
		{"endpoints", map[string]any{
			"relay_outbound": []any{"tcp://127.0.0.1:4002"},
			"a":              []any{"tcp://a:1"},
		}},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(cfg[tc.key], tc.want) {
			t.Errorf("%s = %v, want %v", tc.key, cfg[tc.key], tc.want)
		}
	}
}

// writeDir writes files (name → source) into a new directory.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPythonValueTypes: values read through Python have the literal
// parser's Go types, and what JSON cannot carry becomes a string.
func TestPythonValueTypes(t *testing.T) {
	const literal = `dict(a=1, b=0.5, c=1.0, d=True, e=None, f=(1, 'x'), g={'k': [1, -2]}, h=1e20, i="é\n")`
	want, err := Parse("config = " + literal)
	if err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, map[string]string{"a.py": "import os\nconfig = " + literal + "\n" +
		"config.update(big=2**70, inf=float('inf'), s=set([1]), raw=b'x', keys={1: 'one', None: 'n'})\n"})
	cfg, err := load(t, withPython(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if !reflect.DeepEqual(cfg[k], v) {
			t.Errorf("%s: Python path %#v, literal parser %#v", k, cfg[k], v)
		}
	}
	for k, v := range map[string]any{
		"big": "1180591620717411303424", "inf": "inf", "s": "{1}", "raw": "b'x'",
		"keys": map[string]any{"1": "one", "None": "n"},
	} {
		if !reflect.DeepEqual(cfg[k], v) {
			t.Errorf("%s = %#v, want %#v", k, cfg[k], v)
		}
	}
}

// TestPythonOutputIgnored: what the config code prints, on stdout or
// stderr, cannot corrupt the result.
func TestPythonOutputIgnored(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.py": `import sys
print('{"config": {"environment": "hijacked"}}')
sys.stdout.flush()
sys.stderr.write("noise\n")
config = dict(environment="stg")
`})
	cfg, err := load(t, withPython(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg["environment"] != "stg" {
		t.Errorf("environment = %v, want stg", cfg["environment"])
	}
}

// TestSharedSubDicts: one dict shared by two keys is one object, as in
// Python, so a later file's keys land under both; and sub-dicts shared
// level after level (issue 14) no longer make the merge exponential.
func TestSharedSubDicts(t *testing.T) {
	small := writeDir(t, map[string]string{
		"a.py": "shared = {'k': 1}\nconfig = dict(x=shared, y=shared)\n",
		"b.py": "config = dict(x={'j': 2})\n",
	})
	cfg, err := load(t, noPython(t), small)
	if err != nil {
		t.Fatal(err)
	}
	assertMatchesFedmsg(t, small, cfg, []string{"x", "y"})

	// 2^40 paths through 40 distinct dicts, in two files.
	var b strings.Builder
	b.WriteString("d0 = {'leaf': 1}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "d%d = {'l': d%d, 'r': d%d}\n", i, i-1, i-1)
	}
	b.WriteString("config = dict(top=d40)\n")
	cases := []struct {
		name string
		l    loader
		pre  string
	}{
		{"literal", noPython(t), ""},
		{"python", withPython(t), "import os\n"},
	}
	for _, tc := range cases {
		dir := writeDir(t, map[string]string{"a.py": tc.pre + b.String(), "b.py": b.String()})
		done := make(chan error, 1)
		go func() {
			_, err := load(t, tc.l, dir)
			done <- err
		}()
		select {
		case err := <-done:
			want := filepath.Join(dir, "a.py") + ": `config` holds more than 262144 values"
			if err == nil || err.Error() != want {
				t.Errorf("%s: error %v, want %q", tc.name, err, want)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s: loading shared sub-dicts did not finish", tc.name)
		}
	}
}

// TestLoadErrors: every way a config cannot be read is one error naming
// the file and line, never a fall-back to defaults.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  string // DIR stands for the directory
	}{
		{"syntax error", map[string]string{"base.py": "config = dict(environment='prod')\n", "relay.py": "# relay\nimport socket\n\nsuffix = 'example.org'\n\nx = 1\nconfig = {'a': 1}}\n"},
			"DIR/relay.py:7: SyntaxError: unmatched '}'"},
		{"exception", map[string]string{"a.py": "import os\nx = 1\nconfig = dict(a=1 / 0)\n"},
			"DIR/a.py:3: ZeroDivisionError: division by zero"},
		{"exception in a function", map[string]string{"a.py": "def certs():\n    raise ValueError('no certs')\n\nconfig = dict(c=certs())\n"},
			"DIR/a.py:2: ValueError: no certs"},
		{"undefined name", map[string]string{"a.py": "config = dict(a=suffix)\n"},
			"DIR/a.py:1: NameError: name 'suffix' is not defined"},
		{"missing module", map[string]string{"a.py": "import os\nimport fedmsg_no_such_module\nconfig = {}\n"},
			"DIR/a.py:2: ModuleNotFoundError: No module named 'fedmsg_no_such_module'"},
		{"config not a dict", map[string]string{"a.py": "import os\n\nconfig = [os.sep]\n"},
			"DIR/a.py:3: `config` is a list, not a dict"},
		{"no config", map[string]string{"a.py": "import os\nconfiguration = {}\n"},
			"DIR/a.py: no `config` defined"},
		{"literal file without config", map[string]string{"a.py": "x = 1\n"},
			"DIR/a.py: no `config` defined"},
		{"literal config not a dict", map[string]string{"a.py": "x = 1\n\nconfig = [x]\n"},
			"DIR/a.py:3: `config` is a list, not a dict"},
		{"exit", map[string]string{"a.py": "import sys\nsys.exit(3)\n"},
			"DIR/a.py:2: SystemExit: 3"},
		{"second file", map[string]string{"a.py": "config = {}\n", "b.py": "import os\nconfig = dict(a=os.no_such_thing)\n"},
			"DIR/b.py:2: AttributeError: module 'os' has no attribute 'no_such_thing'"},
		// 2 GiB is past the evaluator's address-space limit.
		{"memory", map[string]string{"a.py": "import os\nbig = bytearray(2 ** 31)\nconfig = {}\n"},
			"DIR/a.py:2: MemoryError"},
		{"result too large", map[string]string{"a.py": "import os\nconfig = dict(s='x' * (40 << 20))\n"},
			"evaluate DIR: result larger than 33554432 bytes"},
	}
	l := withPython(t)
	for _, tc := range cases {
		dir := writeDir(t, tc.files)
		cfg, err := load(t, l, dir)
		want := strings.ReplaceAll(tc.want, "DIR", dir)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v: got (%v, %v)\nwant error %q", tc.name, tc.files, cfg, err, want)
		}
	}
}

func TestLoadWithoutPython(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.py": "# ssl\n\nimport os\nconfig = {}\n"})
	l := loader{python: func() (string, error) { return "", errors.New("no python3 found") }, log: clienttest.Logger(t)}
	_, err := load(t, l, dir)
	want := dir + "/a.py:3:8: unsupported import of \"os\" (only `import socket`); reading it needs Python: no python3 found"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

// TestPythonBounded: a config that never finishes, or that detaches a
// child holding the result pipe, costs the timeout and nothing more.
func TestPythonBounded(t *testing.T) {
	clienttest.Require(t, clienttest.Python)
	cases := []struct{ name, src string }{
		{"loop", "while True:\n    pass\n"},
		{"child holds the pipe", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(120)\n    os._exit(0)\nos._exit(0)\n"},
	}
	for _, tc := range cases {
		dir := writeDir(t, map[string]string{"a.py": tc.src})
		l := loader{python: findPython, timeout: 3 * time.Second, log: clienttest.Logger(t)}
		start := time.Now()
		_, err := load(t, l, dir)
		if err == nil || !strings.Contains(err.Error(), "no result within 3s") {
			t.Errorf("%s: error %v, want a timeout", tc.name, err)
		}
		if took := time.Since(start); took > time.Minute {
			t.Errorf("%s: took %v", tc.name, took)
		}
	}
}

// TestPythonResultWithChildLeft: a child the config code forked keeps the
// result pipe open, yet the result is read as soon as Python wrote it.
func TestPythonResultWithChildLeft(t *testing.T) {
	clienttest.Require(t, clienttest.Python)
	stop := filepath.Join(t.TempDir(), "stop")
	defer os.WriteFile(stop, nil, 0o644)
	dir := writeDir(t, map[string]string{"a.py": `import os, time
if os.fork() == 0:
    end = time.time() + 120
    while not os.path.exists(` + "'" + stop + "'" + `) and time.time() < end:
        time.sleep(0.1)
    os._exit(0)
config = dict(environment='stg')
`})
	l := loader{python: findPython, timeout: time.Minute, log: clienttest.Logger(t)}
	start := time.Now()
	cfg, err := load(t, l, dir)
	if err != nil || cfg["environment"] != "stg" {
		t.Fatalf("load = %v, %v", cfg, err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %v: the read waited for the child", took)
	}
}

// TestLiteralDirNeverStartsPython runs the same loader on a literal and a
// Python directory with an interpreter that leaves a mark: only the second
// may leave it.
func TestLiteralDirNeverStartsPython(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "started")
	fake := filepath.Join(t.TempDir(), "python3")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\ntouch "+mark+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := loader{python: func() (string, error) { return fake, nil }, timeout: time.Minute, log: clienttest.Logger(t)}
	if _, err := load(t, l, "testdata/literal.d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the literal directory started Python")
	}
	if _, err := load(t, l, "testdata/fedora.d"); err == nil || !strings.Contains(err.Error(), "no result") {
		t.Errorf("fedora.d with a failing interpreter: %v", err)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Error("fedora.d did not start Python: the check above proves nothing")
	}
}

func TestFilesSingleAndMissing(t *testing.T) {
	files, err := Files("testdata/literal.d/relay.py")
	if err != nil || len(files) != 1 {
		t.Errorf("Files(file) = %v, %v; want the file itself", files, err)
	}
	files, err = Files("testdata/does-not-exist")
	if err != nil || len(files) != 0 {
		t.Errorf("Files(missing) = %v, %v; want nothing, no error", files, err)
	}
	cfg, err := LoadFrom("testdata/does-not-exist", "", clienttest.Logger(t))
	if err != nil || len(cfg) != 0 {
		t.Errorf("LoadFrom(missing) = %v, %v; want an empty config", cfg, err)
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

// TestUnreadable: a file or a directory the user cannot read is one error
// naming it, not a config silently read without it. Root reads anything, so
// as root the test runs itself again as nobody.
func TestUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "^TestUnreadable$")
		return
	}
	dir := writeDir(t, map[string]string{"base.py": "config = dict(environment='prod')\n", "ssl.py": "config = {}\n"})
	if err := os.Chmod(filepath.Join(dir, "ssl.py"), 0); err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(t.TempDir(), "fedmsg.d")
	if err := os.Mkdir(locked, 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ location, want string }{
		{dir, "fedmsg config: open " + dir + "/ssl.py: permission denied"},
		{locked, "config location: open " + locked + ": permission denied"},
	}
	for _, tc := range cases {
		cfg, err := LoadFrom(tc.location, "", clienttest.Logger(t))
		if err == nil || err.Error() != tc.want {
			t.Errorf("LoadFrom(%s) = %v, %v; want error %q", tc.location, cfg, err, tc.want)
		}
	}
}

// runAsNobody runs the test binary's test named by pattern as user nobody.
func runAsNobody(t *testing.T, pattern string) {
	dir := t.TempDir()
	// The binary's own directory is root's alone; nobody runs a copy.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(dir, "fedmsgconf.test")
	if err := os.WriteFile(copied, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copied, "-test.run", pattern, "-test.v", "-test.count", "1")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+strings.Trim(pattern, "^$")) {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	t.Logf("as nobody:\n%s", out)
}

// TestFilesAsFedmsg: the files read are fedmsg's: every name ending in .py
// (hidden ones too) that is a file after following links, sorted.
func TestFilesAsFedmsg(t *testing.T) {
	python := clienttest.Require(t, clienttest.Python)
	dir := writeDir(t, map[string]string{"c.py": "", ".hidden.py": "", "notes.txt": "", "Z.py": ""})
	for _, err := range []error{
		os.Mkdir(filepath.Join(dir, "b.py"), 0o755),
		os.Symlink("missing.py", filepath.Join(dir, "a.py")),
		os.Symlink("c.py", filepath.Join(dir, "d.py")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	// fedmsg.config._gather_configs_in, then its os.path.isfile check.
	out, err := exec.Command(python, "-c", `import json, os, sys
d = sys.argv[1]
names = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith('.py'))
json.dump([n for n in names if os.path.isfile(n)], sys.stdout)`, dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(files, want) || len(want) != 4 {
		t.Errorf("Files = %v, fedmsg reads %v", files, want)
	}
}
