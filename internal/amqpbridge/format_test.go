package amqpbridge

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestToPublishing(t *testing.T) {
	received := time.Date(2026, 11, 26, 16, 30, 5, 999, time.UTC)
	tests := []struct {
		name, body string
		wantErr    error
		wantID     string // "" for a generated id
		wantBody   string
	}{
		{"plain", `{"topic":"t","msg":{"a":[1,"}"]},"msg_id":"2026-abc","username":"apache"}`, nil, "2026-abc", `{"a":[1,"}"]}`},
		{"escaped id", `{"msg_id":"2026-\u00e9","msg":{}}`, nil, "2026-é", `{}`},
		{"last duplicate wins", `{"msg":{"old":1},"msg":{"new":2},"msg_id":"x"}`, nil, "x", `{"new":2}`},
		{"no id", `{"msg":{"a":1}}`, nil, "", `{"a":1}`},
		{"null id and user", `{"msg":{},"msg_id":null,"username":null}`, nil, "", `{}`},
		{"injected", `{"msg":{},"username":"amqp-bridge"}`, errLoop, "", ""},
		{"escaped injected", `{"msg":{},"username":"amqp-\u0062ridge"}`, errLoop, "", ""},
		{"msg not object", `{"msg":[1]}`, errInvalid, "", ""},
		{"no msg", `{"topic":"t"}`, errInvalid, "", ""},
		{"id not string", `{"msg":{},"msg_id":7}`, errInvalid, "", ""},
		{"not json", `{"msg":`, errInvalid, "", ""},
		{"id too long", `{"msg":{},"msg_id":"` + strings.Repeat("x", 256) + `"}`, errInvalid, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := toPublishing([]byte("org.fedoraproject.prod.x"), []byte(tt.body), received, &headerCache{})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if string(p.Body) != tt.wantBody {
				t.Errorf("body %s, want %s", p.Body, tt.wantBody)
			}
			switch {
			case tt.wantID != "" && p.MessageId != tt.wantID:
				t.Errorf("message id %q, want %q", p.MessageId, tt.wantID)
			case tt.wantID == "" && (!hasYearPrefix(p.MessageId) || !strings.HasPrefix(p.MessageId, "2026-") || len(p.MessageId) != 41):
				t.Errorf("generated message id %q, want 2026-<uuid4>", p.MessageId)
			}
			if got := p.Headers[sentAtHeader]; got != "2026-11-26T16:30:05+00:00" {
				t.Errorf("sent-at %v", got)
			}
		})
	}
	if _, err := toPublishing([]byte("bad\xff"), []byte(`{"msg":{}}`), received, &headerCache{}); !errors.Is(err, errInvalid) {
		t.Errorf("non-UTF-8 topic: %v", err)
	}
}

// Messages of one second share a header table; the next second gets its own.
func TestHeaderCache(t *testing.T) {
	var hc headerCache
	t0 := time.Date(2026, 11, 26, 16, 30, 5, 100, time.UTC)
	first := hc.headers(t0)
	if same := hc.headers(t0.Add(800 * time.Millisecond)); fmt.Sprintf("%p", same) != fmt.Sprintf("%p", first) {
		t.Error("a message of the same second got a new table")
	}
	next := hc.headers(t0.Add(time.Second))
	if next[sentAtHeader] != "2026-11-26T16:30:06+00:00" || first[sentAtHeader] != "2026-11-26T16:30:05+00:00" {
		t.Errorf("sent-at %v then %v", first[sentAtHeader], next[sentAtHeader])
	}
	if next[schemaHeader] != baseSchema || next[severityHeader] != severityInfo || next[priorityHeader] != int32(0) {
		t.Errorf("headers %v", next)
	}
}
