package pyjson

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson/pyjsontest"
)

// canonicalCases pin what Python 3's json.dumps(json.loads(in), sort_keys=True,
// separators=(',', ':')) writes. TestCanonicalCasesMatchPython checks every
// expectation against Python itself, so none of them is made up.
var canonicalCases = []struct {
	name string
	in   string
	want string // "" when Canonical must fail with wantErr
	err  error
}{
	{"fedmsg body", `{"topic": "org.fedoraproject.prod.git.receive", "i": 1, "msg": {"commit": {"stats": {}}}, "timestamp": 1700000000}`,
		`{"i":1,"msg":{"commit":{"stats":{}}},"timestamp":1700000000,"topic":"org.fedoraproject.prod.git.receive"}`, nil},
	{"whitespace", " \t\r\n[ 1 , {\"a\" :\n2} ]\n", `[1,{"a":2}]`, nil},
	{"scalars", `[null,true,false,"",{},[]]`, `[null,true,false,"",{},[]]`, nil},
	{"top-level scalar", `"x"`, `"x"`, nil},
	{"duplicate keys last wins", `{"b":1,"a":2,"b":3,"a":{"z":1}}`, `{"a":{"z":1},"b":3}`, nil},
	{"escaped duplicate key", `{"a":1,"\u0061":2}`, `{"a":2}`, nil},
	{"short escapes", `"\" \\ \/ \b \f \n \r \t"`, `"\" \\ / \b \f \n \r \t"`, nil},
	{"control and DEL", "\"\\u0000\\u001f\x7f\\u007F\"", `"\u0000\u001f\u007f\u007f"`, nil},
	{"slash not escaped", `"a/b"`, `"a/b"`, nil},
	{"non-ASCII lower-case hex", `"é€\u00E9\uABCD"`, `"\u00e9\u20ac\u00e9\uabcd"`, nil},
	{"astral literal", `"😀"`, `"\ud83d\ude00"`, nil},
	{"astral escaped upper-case", `"\uD83D\uDE00"`, `"\ud83d\ude00"`, nil},
	{"lone surrogates", `"\ud800 \udc00 \udc00\ud800 \ud800\u0041"`, `"\ud800 \udc00 \udc00\ud800 \ud800A"`, nil},
	{"keys by code point", `{"\uffff":1,"😀":2,"\ue000":3,"\ud800":4,"a":5,"A":6,"":7}`,
		`{"":7,"A":6,"a":5,"\ud800":4,"\ue000":3,"\uffff":1,"\ud83d\ude00":2}`, nil},
	{"integers", `[0,-0,7,-7,123456789012345678901234567890,-98765432109876543210]`,
		`[0,0,7,-7,123456789012345678901234567890,-98765432109876543210]`, nil},
	{"integer 4300 digits", strings.Repeat("9", 4300), strings.Repeat("9", 4300), nil},
	{"integer 4301 digits", strings.Repeat("9", 4301), "", ErrNotReproducible},
	{"negative integer 4300 digits", "-" + strings.Repeat("9", 4300), "-" + strings.Repeat("9", 4300), nil},
	{"floats positional", `[1.0,1.5,-0.0,0.0,0.0001,123.456,1e15,1E3,2.50]`,
		`[1.0,1.5,-0.0,0.0,0.0001,123.456,1000000000000000.0,1000.0,2.5]`, nil},
	{"floats exponent", `[1e16,1e-05,0.00001,1.5e300,1e+16,1E-7,12345678901234567890.0,5e-324]`,
		`[1e+16,1e-05,1e-05,1.5e+300,1e+16,1e-07,1.2345678901234567e+19,5e-324]`, nil},
	{"floats shortest round trip", `[0.1,0.30000000000000004,1.7976931348623157e308,2.2250738585072014e-308]`,
		`[0.1,0.30000000000000004,1.7976931348623157e+308,2.2250738585072014e-308]`, nil},
	{"float underflow", `[1e-400,-1e-400,0e999999999,1e-99999999999999999999,-0E+0]`, `[0.0,-0.0,0.0,0.0,-0.0]`, nil},
	{"huge exponent", `[1e99999999999999999999]`, "", ErrNotReproducible},
	{"float overflow", `1e400`, "", ErrNotReproducible},
	{"NaN", `{"a":NaN}`, "", ErrNotReproducible},
	{"Infinity", `[Infinity]`, "", ErrNotReproducible},
	{"-Infinity", `[-Infinity]`, "", ErrNotReproducible},
	{"NaN dropped by duplicate key", `{"a":NaN,"b":[1e999],"a":1,"b":2}`, `{"a":1,"b":2}`, nil},
	{"NaN nested", `{"a":{"b":[1,-1E999]}}`, "", ErrNotReproducible},
	{"nesting limit", strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth),
		strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), nil},
	{"too deep", strings.Repeat("[", 1000) + strings.Repeat("]", 1000), "", ErrNotReproducible},
	{"leading zero", `01`, "", ErrInvalidJSON},
	{"bare point", `[1.]`, "", ErrInvalidJSON},
	{"bare exponent", `[1e]`, "", ErrInvalidJSON},
	{"trailing comma", `{"a":1,}`, "", ErrInvalidJSON},
	{"single quotes", `{'a':1}`, "", ErrInvalidJSON},
	{"raw newline in string", "\"a\nb\"", "", ErrInvalidJSON},
	{"invalid escape", `"\x41"`, "", ErrInvalidJSON},
	{"short unicode escape", `"\u12"`, "", ErrInvalidJSON},
	{"invalid UTF-8", "\"\xff\"", "", ErrInvalidJSON},
	{"encoded surrogate", "\"\xed\xa0\x80\"", "", ErrInvalidJSON},
	{"overlong UTF-8", "\"\xc0\xaf\"", "", ErrInvalidJSON},
	{"byte order mark", "\xef\xbb\xbf{}", "", ErrInvalidJSON},
	{"extra data", `{} {}`, "", ErrInvalidJSON},
	{"empty", ``, "", ErrInvalidJSON},
	{"truncated", `{"a":[1,2`, "", ErrInvalidJSON},
}

func TestCanonical(t *testing.T) {
	for _, tc := range canonicalCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonical([]byte(tc.in))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Canonical(%.80q) = %.80q, %v; want error %v", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("Canonical(%.80q)\n got %.200q, %v\nwant %.200q", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestCanonicalCasesMatchPython checks the table's expectations against Python.
func TestCanonicalCasesMatchPython(t *testing.T) {
	bodies := make([][]byte, len(canonicalCases))
	for i, tc := range canonicalCases {
		bodies[i] = []byte(tc.in)
	}
	answers := pythonCanonical(t, bodies)
	for i, tc := range canonicalCases {
		want := "ok " + tc.want
		if tc.err != nil {
			if !strings.HasPrefix(answers[i], "err ") {
				t.Errorf("%s: Python accepts %.80q (%.80s); the table says it cannot be reproduced", tc.name, tc.in, answers[i])
			}
			continue
		}
		if answers[i] != want {
			t.Errorf("%s: Python writes %.200q, the table says %.200q", tc.name, answers[i], want)
		}
	}
}

// TestCanonicalCorpusMatchesPython compares Canonical with Python's json.dumps
// over a generated corpus (fixed seed), byte for byte: Go must fail exactly
// where Python fails or would write NaN/Infinity, and agree everywhere else.
func TestCanonicalCorpusMatchesPython(t *testing.T) {
	corpus := pyjsontest.Corpus(20260, 12000)
	answers := pythonCanonical(t, corpus)
	var accepted, refused, mismatches int
	for i, body := range corpus {
		got, err := Canonical(body)
		py, pyOK := strings.CutPrefix(answers[i], "ok ")
		switch {
		case pyOK && err == nil && py == string(got):
			accepted++
			continue
		case !pyOK && err != nil:
			refused++
			continue
		}
		mismatches++
		if mismatches <= 10 {
			t.Errorf("body %d %.300q:\n Go     %.300q, %v\n Python %.300q", i, body, got, err, answers[i])
		}
	}
	t.Logf("%d bodies: %d identical, %d refused by both, %d mismatches", len(corpus), accepted, refused, mismatches)
	// The corpus must exercise both paths, or this test proves little.
	if accepted < len(corpus)*8/10 || refused < len(corpus)/50 {
		t.Errorf("corpus balance off: %d accepted, %d refused of %d", accepted, refused, len(corpus))
	}
}

// TestCanonicalIdempotent: canonical output is itself a body whose canonical
// form is the same bytes (what a validator re-canonicalising does).
func TestCanonicalIdempotent(t *testing.T) {
	for i, body := range pyjsontest.Corpus(7, 2000) {
		once, err := Canonical(body)
		if err != nil {
			continue
		}
		twice, err := Canonical(once)
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("body %d: Canonical(%.200q) = %.200q, %v", i, once, twice, err)
		}
	}
}

// TestDepthLimit: MaxDepth levels are read, one more is refused, as the
// relay's inbound scanner (wire) draws the line.
func TestDepthLimit(t *testing.T) {
	for _, open := range []string{"[", `{"a":`} {
		closing := map[string]string{"[": "]", `{"a":`: "}"}[open]
		at := strings.Repeat(open, MaxDepth) + "1" + strings.Repeat(closing, MaxDepth)
		if _, err := Canonical([]byte(at)); err != nil {
			t.Errorf("%d levels of %s: %v", MaxDepth, open, err)
		}
		over := open + at + closing
		if _, err := Canonical([]byte(over)); !errors.Is(err, ErrNotReproducible) {
			t.Errorf("%d levels of %s: %v, want %v", MaxDepth+1, open, err, ErrNotReproducible)
		}
	}
}
