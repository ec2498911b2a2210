package pyjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzCanonical: Canonical never panics; what it accepts is JSON, and
// what it writes is ASCII, valid JSON and its own canonical form. A body that
// is valid UTF-8 JSON is never called invalid (only, at worst, unreproducible).
// Seeds: testdata/fuzz/FuzzCanonical and the table cases.
func FuzzCanonical(f *testing.F) {
	for _, tc := range canonicalCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := Canonical(body)
		if err != nil {
			if !errors.Is(err, ErrInvalidJSON) && !errors.Is(err, ErrNotReproducible) {
				t.Fatalf("unclassified error %v", err)
			}
			if errors.Is(err, ErrInvalidJSON) && utf8.Valid(body) && json.Valid(body) && !bytes.HasPrefix(body, []byte("\xef\xbb\xbf")) {
				t.Fatalf("valid JSON %q called invalid: %v", body, err)
			}
			return
		}
		// NaN and Infinity are not JSON; Python reads them, and Canonical only
		// accepts them when a duplicate key drops them.
		if !json.Valid(body) && !bytes.Contains(body, []byte("NaN")) && !bytes.Contains(body, []byte("Infinity")) {
			t.Fatalf("accepted invalid JSON %q as %q", body, out)
		}
		for _, c := range out {
			if c >= utf8.RuneSelf {
				t.Fatalf("non-ASCII output %q", out)
			}
		}
		again, err := Canonical(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Canonical(%q) = %q, but Canonical of that = %q, %v", body, out, again, err)
		}
	})
}
