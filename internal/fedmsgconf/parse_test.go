package fedmsgconf

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
)

// parseCases parse successfully; each is also checked against Python itself.
var parseCases = []struct {
	name string
	src  string
	want map[string]any
}{
	{"dict call", `config = dict(a="x", b=1, c=1.5, d=True, e=False, f=None)`,
		map[string]any{"a": "x", "b": int64(1), "c": 1.5, "d": true, "e": false, "f": nil}},
	{"dict display", `config = {'a': [1, 2,], "b": (3,), 'c': (), 'd': {}, 'e': (4)}`,
		map[string]any{"a": []any{int64(1), int64(2)}, "b": []any{int64(3)}, "c": []any{}, "d": map[string]any{}, "e": int64(4)}},
	{"trailing commas and comments", "config = dict(\n  a=[\n    'x',  # one\n    'y',\n  ],  # list\n)\n# end",
		map[string]any{"a": []any{"x", "y"}}},
	{"escapes", `config = {'s': "q\"\\\n\t\x41\101\u00e9\U0001F600\z"}`,
		map[string]any{"s": "q\"\\\n\tAA\u00e9\U0001F600\\z"}},
	{"raw and prefixes", `config = {'r': r'a\nb\'c', 'u': u'd', 'R': R"e\\"}`,
		map[string]any{"r": `a\nb\'c`, "u": "d", "R": `e\\`}},
	{"triple quotes", "config = {'t': '''a\n'b'\n''', 'd': \"\"\"x\\\ny\"\"\"}",
		map[string]any{"t": "a\n'b'\n", "d": "xy"}},
	{"implicit concatenation", "config = dict(s=('tcp://' \"host\"\n    ':1'))",
		map[string]any{"s": "tcp://host:1"}},
	{"numbers", `config = dict(a=-1, b=+2, c=0x1F, d=0o17, e=0b11, f=1_000, g=1e3, h=-.5, i=2.5E-1, j=0)`,
		map[string]any{"a": int64(-1), "b": int64(2), "c": int64(31), "d": int64(15), "e": int64(3), "f": int64(1000),
			"g": 1000.0, "h": -0.5, "i": 0.25, "j": int64(0)}},
	{"names assigned above", "suffix = 'example.org'\nports = [1, 2]\nconfig = dict(s=suffix, p=ports)",
		map[string]any{"s": "example.org", "p": []any{int64(1), int64(2)}}},
	{"last config wins", "config = dict(a=1)\nconfig = dict(b=2)", map[string]any{"b": int64(2)}},
	{"split and index", "config = dict(a='a.b.c'.split('.')[0], b='a.b.c'.split('.', 1)[-1], c={'k': 'v'}['k'])",
		map[string]any{"a": "a", "b": "b.c", "c": "v"}},
	{"line continuation", "config = \\\n  dict(a=1)", map[string]any{"a": int64(1)}},
	{"crlf", "config = dict(\r\n  a='x',\r\n)\r\n", map[string]any{"a": "x"}},
	{"non-ascii", "config = dict(name='Zbyněk 😀')", map[string]any{"name": "Zbyněk 😀"}},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		got, err := Parse(tc.src)
		if err != nil {
			t.Errorf("%s: Parse(%q): %v", tc.name, tc.src, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Parse(%q)\n got %#v\nwant %#v", tc.name, tc.src, got, tc.want)
		}
	}
}

func TestParseHostnameIdiom(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("import socket\nhostname = socket.gethostname().split('.', 1)[0]\nconfig = dict(h=hostname)")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.SplitN(host, ".", 2)[0]; got["h"] != want {
		t.Errorf("hostname = %q, want %q", got["h"], want)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name     string
		src      string
		wantLine int
		wantMsg  string
	}{
		{"import os", "import os\nconfig = {}", 1, "unsupported import"},
		{"from import", "from os import path\nconfig = {}", 1, "unsupported statement"},
		{"percent format", "config = dict(a='x%s' % 'y')", 1, "unsupported character '%'"},
		{"function call", "config = dict(a=len('x'))", 1, "unsupported name \"len\""},
		{"undefined name", "config = dict(a=suffix)", 1, "unsupported name \"suffix\""},
		{"if block", "if True:\n    config = {}", 1, "unsupported statement"},
		{"indented", "config = {}\n  x = 1", 2, "indented statement"},
		{"item assignment", "config = {}\nconfig['a'] = 1", 2, "only NAME = value"},
		{"unterminated", "config = dict(a='x\n)", 1, "unterminated string"},
		{"unclosed bracket", "config = dict(a=1", 1, "expected \",\""},
		{"f-string", "config = dict(a=f'x')", 1, "unsupported string prefix"},
		{"bytes", "config = dict(a=b'x')", 1, "unsupported string prefix"},
		{"int key", "config = {1: 'a'}", 1, "only strings"},
		{"leading zero", "config = dict(a=017)", 1, "invalid number"},
		{"huge int", "config = dict(a=99999999999999999999)", 1, "unsupported number"},
		{"complex", "config = dict(a=1j)", 1, "unsupported number"},
		{"named escape", `config = dict(a='\N{BULLET}')`, 1, `\N{...}`},
		{"short hex escape", `config = dict(a='\x4')`, 1, "truncated escape"},
		{"deep nesting", "config = " + strings.Repeat("[", 200) + strings.Repeat("]", 200), 1, "nesting deeper"},
		{"lambda", "config = dict(a=lambda: 1)", 1, "unsupported name \"lambda\""},
		{"repeated keyword", "config = dict(\n    a=1,\n    a=2)", 3, "keyword argument repeated: a"},
	}
	for _, tc := range cases {
		_, err := Parse(tc.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%s: Parse(%q) error = %v, want a SyntaxError", tc.name, tc.src, err)
			continue
		}
		if se.Line != tc.wantLine || !strings.Contains(se.Msg, tc.wantMsg) {
			t.Errorf("%s: Parse(%q) = %v, want line %d containing %q", tc.name, tc.src, se, tc.wantLine, tc.wantMsg)
		}
	}
}

func TestParseNoConfig(t *testing.T) {
	for _, src := range []string{"", "x = 1", "config = [1]"} {
		if _, err := Parse(src); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error about config", src)
		}
	}
}

// pythonConfigs executes each source with the real interpreter, as fedmsg's
// execfile does, and returns json.dumps(config) of each.
const pythonConfigs = `
import json, sys
out = []
for src in json.load(sys.stdin):
    variables = {}
    exec(compile(src, "fixture.py", "exec"), variables)
    out.append(variables["config"])
json.dump(out, sys.stdout)
`

// TestParseMatchesPython checks every accepted source, and every fixture we
// accept, against what Python itself evaluates.
func TestParseMatchesPython(t *testing.T) {
	python := clienttest.RequirePython(t)
	var sources []string
	for _, tc := range parseCases {
		sources = append(sources, tc.src)
	}
	fixtures, _ := filepath.Glob("testdata/*/*.py")
	for _, f := range fixtures {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(string(b)); err == nil {
			sources = append(sources, string(b))
		}
	}
	in, _ := json.Marshal(sources)
	cmd := exec.Command(python, "-c", pythonConfigs)
	cmd.Stdin = strings.NewReader(string(in))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	var want []any
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	for i, src := range sources {
		got, _ := Parse(src)
		b, _ := json.Marshal(got)
		var norm any
		_ = json.Unmarshal(b, &norm)
		if !reflect.DeepEqual(norm, want[i]) {
			t.Errorf("Parse(%q)\n  = %s\npython gives %v", src, b, want[i])
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.src)
	}
	fixtures, _ := filepath.Glob("testdata/*/*.py")
	for _, file := range fixtures {
		b, _ := os.ReadFile(file)
		f.Add(string(b))
		f.Add(string(b[:len(b)/2]))
	}
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) && (se.Line < 1 || se.Col < 1) {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		if _, err := json.Marshal(cfg); err != nil {
			t.Fatalf("parsed config does not encode: %v", err)
		}
	})
}
