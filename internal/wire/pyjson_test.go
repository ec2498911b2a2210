package wire

import (
	"errors"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
	"github.com/fedora-infra/fedmsg-relay/internal/pyjson/pyjsontest"
)

// Validate and pyjson share Python's rules: over pyjson's corpus (the
// spellings producers use, and bodies Python refuses) every object Python
// reads and writes back passes Validate, and nothing that is not JSON does.
// Only NaN and Infinity, which Python reads but cannot write back as JSON,
// pass Validate and not pyjson: Python producers emit them.
func TestValidateAgreesWithPyjson(t *testing.T) {
	p := &Policy{PassTopicMismatch: true}
	var objects, invalid int
	for i, body := range pyjsontest.Corpus(20261, 12000) {
		v, err := pyjson.Parse(body)
		got := p.Validate(2, len(topic)+len(body), []byte(topic), body)
		switch {
		case err == nil && v.Kind == pyjson.KindObject:
			objects++
			if got != OK {
				t.Errorf("body %d %.200q: Python reads it, Validate says %v", i, body, got)
			}
		case errors.Is(err, pyjson.ErrInvalidJSON):
			invalid++
			if got == OK {
				t.Errorf("body %d %.200q: not JSON (%v), Validate says OK", i, body, err)
			}
		}
	}
	if objects < 1000 || invalid < 50 {
		t.Errorf("corpus balance off: %d objects, %d invalid", objects, invalid)
	}
}

// The limits Python's json.loads has and pyjson shares: MaxDepth levels of
// nesting and integers of pyjson.MaxIntDigits digits pass, one more does not.
func TestPythonLimits(t *testing.T) {
	p := &Policy{PassTopicMismatch: true}
	nest := func(levels int) string { return strings.Repeat("[", levels-1) + "1" + strings.Repeat("]", levels-1) }
	digits := strings.Repeat("7", pyjson.MaxIntDigits)
	tests := []struct {
		name string
		body string
		want Reason
	}{
		{"nesting at the limit", `{"x":` + nest(MaxDepth) + `}`, OK},
		{"nesting over the limit", `{"x":[` + nest(MaxDepth) + `]}`, BodyNotJSON},
		{"longest integer", `{"x":-` + digits + `}`, OK},
		{"integer too long", `{"x":-` + digits + `1}`, BodyNotJSON},
		{"long fraction", `{"x":0.` + digits + `1}`, OK}, // a float: no digit limit
		{"long fraction with exponent", `{"x":-0.` + digits + `1e-3}`, OK},
	}
	for _, tt := range tests {
		if got := p.Validate(2, len(topic)+len(tt.body), []byte(topic), []byte(tt.body)); got != tt.want {
			t.Errorf("%s: Validate = %v, want %v", tt.name, got, tt.want)
		}
		if _, err := pyjson.Canonical([]byte(tt.body)); (err == nil) != (tt.want == OK) {
			t.Errorf("%s: pyjson says %v, Validate is to say %v", tt.name, err, tt.want)
		}
	}
}
