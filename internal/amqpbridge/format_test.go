package amqpbridge

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
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

// An envelope's "headers" travel as AMQP headers beside fedora-messaging's,
// which win a clash, as in Fedora's fedmsg-migration-tools bridge; the shared
// per-second table is never written to.
func TestEnvelopeHeaders(t *testing.T) {
	received := time.Date(2026, 11, 26, 16, 30, 5, 0, time.UTC)
	fm := func(extra amqp.Table) amqp.Table {
		t := amqp.Table{schemaHeader: baseSchema, severityHeader: severityInfo, sentAtHeader: "2026-11-26T16:30:05+00:00", priorityHeader: int32(0)}
		maps.Copy(t, extra)
		return t
	}
	tests := []struct {
		name    string
		headers string // the envelope's "headers" member, "" for none
		want    amqp.Table
		wantErr error
	}{
		{"none", "", fm(nil), nil},
		{"null", `null`, fm(nil), nil},
		{"empty", `{}`, fm(nil), nil},
		{"types", `{"s": "caf\u00e9", "i": 42, "big": 9007199254740993, "t": true, "n": null, "list": [1, "a", [false]], "obj": {"k": {"deep": -1}}}`,
			fm(amqp.Table{"s": "café", "i": int64(42), "big": int64(9007199254740993), "t": true, "n": nil,
				"list": []any{int64(1), "a", []any{false}}, "obj": amqp.Table{"k": amqp.Table{"deep": int64(-1)}}}), nil},
		// Exact decimals where they fit (pika reads doubles as integers), doubles otherwise.
		{"numbers", `{"a": 2.5, "b": -0.125, "c": 1.50, "d": 1e3, "e": 25e-1, "f": 0.1234567891234, "g": 1.7976931348623157e308, "h": 1e-300}`,
			fm(amqp.Table{"a": amqp.Decimal{Scale: 1, Value: 25}, "b": amqp.Decimal{Scale: 3, Value: -125}, "c": amqp.Decimal{Scale: 1, Value: 15},
				"d": amqp.Decimal{Value: 1000}, "e": amqp.Decimal{Scale: 1, Value: 25}, "f": 0.1234567891234, "g": 1.7976931348623157e308, "h": 1e-300}), nil},
		{"fedora-messaging wins", `{"sent-at": "forged", "fedora_messaging_schema": "x", "priority": 9, "x-origin": "koji"}`, fm(amqp.Table{"x-origin": "koji"}), nil},
		{"not an object", `["a"]`, nil, errInvalid},
		{"a string", `"a"`, nil, errInvalid},
		{"long name", `{"` + strings.Repeat("k", 256) + `": 1}`, nil, errInvalid},
		{"long nested name", `{"o": [{"` + strings.Repeat("k", 256) + `": 1}]}`, nil, errInvalid},
		{"number out of range", `{"n": 1e999}`, nil, errInvalid},
		{"too large", `{"pad": "` + strings.Repeat("x", maxEnvelopeHeaderBytes) + `"}`, nil, errInvalid},
	}
	hc := &headerCache{}
	shared := hc.headers(received)
	for _, tt := range tests {
		body := `{"msg": {}, "msg_id": "2026-h"}`
		if tt.headers != "" {
			body = `{"msg": {}, "headers": ` + tt.headers + `, "msg_id": "2026-h"}`
		}
		p, err := toPublishing([]byte("org.fedoraproject.prod.x"), []byte(body), received, hc)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("%s: body %s: error %v, want %v", tt.name, body, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if !reflect.DeepEqual(p.Headers, tt.want) {
			t.Errorf("%s: body %s:\nheaders %#v\nwant    %#v", tt.name, body, p.Headers, tt.want)
		}
		if err := p.Headers.Validate(); err != nil {
			t.Errorf("%s: headers not encodable: %v", tt.name, err)
		}
	}
	if !reflect.DeepEqual(shared, fm(nil)) {
		t.Errorf("the shared table changed: %v", shared)
	}
}
