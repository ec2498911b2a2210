package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
)

func body(topic string, extra string) []byte {
	return []byte(fmt.Sprintf(`{"topic": %q, "msg": {"log": "hi"%s}, "timestamp": 1700000000, "i": 1, "msg_id": "2026-0c5e6f6e-3f53-4a51-bf4a-4a1d0d4fd0d1", "username": "apache"}`, topic, extra))
}

const topic = "org.fedoraproject.prod.git.receive"

func TestValidate(t *testing.T) {
	strict := &Policy{MaxBytes: 4096}
	allow := &Policy{MaxBytes: 4096, AllowedPrefixes: [][]byte{[]byte("org.fedoraproject.prod")}}
	lenient := &Policy{MaxBytes: 4096, PassTopicMismatch: true}
	good := body(topic, "")
	tests := []struct {
		name   string
		policy *Policy
		frames int
		topic  string
		body   []byte
		want   Reason
	}{
		{"valid", strict, 2, topic, good, OK},
		{"one frame", strict, 1, topic, nil, Frames},
		{"three frames", strict, 3, topic, good, Frames},
		{"empty topic", strict, 2, "", good, EmptyTopic},
		{"non-utf8 topic", strict, 2, "org.\xff\xfe", good, TopicNotUTF8},
		{"not json", strict, 2, topic, []byte("hello"), BodyNotJSON},
		{"truncated json", strict, 2, topic, good[:len(good)-1], BodyNotJSON},
		{"trailing garbage", strict, 2, topic, append(append([]byte{}, good...), " x"...), BodyNotJSON},
		{"json array", strict, 2, topic, []byte(`[1,2]`), BodyNotObject},
		{"json string", strict, 2, topic, []byte(`"x"`), BodyNotObject},
		{"invalid utf8 body", strict, 2, topic, []byte("{\"topic\":\"" + topic + "\",\"x\":\"\xff\"}"), BodyNotJSON},
		{"control char in string", strict, 2, topic, []byte("{\"topic\":\"" + topic + "\",\"x\":\"a\x01\"}"), BodyNotJSON},
		{"topic mismatch", strict, 2, topic, body("org.fedoraproject.prod.other", ""), TopicMismatch},
		{"topic mismatch passed", lenient, 2, topic, body("org.fedoraproject.prod.other", ""), OK},
		{"missing body topic", strict, 2, topic, []byte(`{"msg":{}}`), TopicMismatch},
		{"nested topic is not top-level", strict, 2, topic, []byte(`{"msg":{"topic":"` + topic + `"}}`), TopicMismatch},
		{"escaped body topic", strict, 2, "a/b", []byte(`{"topic":"a\/b"}`), OK},
		{"escaped key", strict, 2, topic, []byte(`{"\u0074opic":"` + topic + `"}`), OK},
		{"duplicate topic last wins", strict, 2, topic, []byte(`{"topic":"` + topic + `","topic":"x"}`), TopicMismatch},
		{"duplicate topic non-string last", strict, 2, topic, []byte(`{"topic":"` + topic + `","topic":1}`), TopicMismatch},
		{"python nan", strict, 2, topic, []byte(`{"topic":"` + topic + `","x":NaN,"y":-Infinity}`), OK},
		{"allowed prefix", allow, 2, topic, good, OK},
		{"not allowed prefix", allow, 2, "org.fedoraproject.stg.git.receive", body("org.fedoraproject.stg.git.receive", ""), TopicNotAllowed},
		{"prefix needs a dot boundary", allow, 2, "org.fedoraproject.prodx.a", body("org.fedoraproject.prodx.a", ""), TopicNotAllowed},
		{"oversize", strict, 2, topic, body(topic, `, "pad": "`+strings.Repeat("x", 5000)+`"`), Oversize},
		{"deep nesting", strict, 2, topic, []byte(`{"topic":"` + topic + `","x":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`), BodyNotJSON},
		{"nesting at limit", &Policy{}, 2, topic, []byte(`{"topic":"` + topic + `","x":` + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + `}`), OK},
		{"mismatched brackets", strict, 2, topic, []byte(`{"topic":"` + topic + `","x":[1}`), BodyNotJSON},
		{"trailing comma", strict, 2, topic, []byte(`{"topic":"` + topic + `",}`), BodyNotJSON},
		{"empty object", lenient, 2, topic, []byte(` {} `), OK},
		{"bad escape", strict, 2, topic, []byte(`{"topic":"` + topic + `","x":"\q"}`), BodyNotJSON},
		{"bad number", strict, 2, topic, []byte(`{"topic":"` + topic + `","x":01}`), BodyNotJSON},
	}
	for _, tt := range tests {
		size := len(tt.topic) + len(tt.body)
		got := tt.policy.Validate(tt.frames, size, []byte(tt.topic), tt.body)
		if got != tt.want {
			t.Errorf("%s: Validate(frames=%d, topic=%q, body=%.80q, policy=%+v) = %v, want %v",
				tt.name, tt.frames, tt.topic, tt.body, *tt.policy, got, tt.want)
		}
	}
}

func TestReasonNamesAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		name := r.String()
		if name == "" || name == "unknown" || seen[name] {
			t.Errorf("reason %d has bad or duplicate name %q", r, name)
		}
		seen[name] = true
	}
}

func TestValidateDoesNotAllocate(t *testing.T) {
	p := &Policy{MaxBytes: 1 << 20}
	b := body(topic, "")
	allocs := testing.AllocsPerRun(100, func() {
		if r := p.Validate(2, len(b), []byte(topic), b); r != OK {
			t.Fatal(r)
		}
	})
	if allocs != 0 {
		t.Fatalf("Validate allocates %v times per call", allocs)
	}
}

// referenceReason is what encoding/json says about a body, for differential fuzzing.
func referenceReason(body []byte) (topic string, found bool, r Reason) {
	// UseNumber: Python accepts 1e700 (as inf); float64 decoding would not.
	if !utf8.Valid(body) { // Python's json.loads(bytes) decodes UTF-8 strictly
		return "", false, BodyNotJSON
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.InputOffset() != int64(len(bytes.TrimRight(body, " \t\r\n"))) {
		return "", false, BodyNotJSON
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", false, BodyNotObject
	}
	s, ok := obj["topic"].(string)
	return s, ok, OK
}

func FuzzValidate(f *testing.F) {
	f.Add(2, []byte(topic), body(topic, ""))
	f.Add(2, []byte(topic), []byte(`{"topic":"a\u00e9\ud83d\ude00","n":-1.5e+10,"l":[true,false,null,{}]}`))
	f.Add(1, []byte(topic), []byte(`{`))
	f.Add(2, []byte(""), []byte(`{"topic":""}`))
	f.Add(3, []byte("x"), []byte(`[[[[`))
	f.Fuzz(func(t *testing.T, frames int, topicFrame, body []byte) {
		p := &Policy{MaxBytes: 1 << 16}
		got := p.Validate(frames, len(topicFrame)+len(body), topicFrame, body)
		if got >= NumReasons {
			t.Fatalf("unknown reason %d", got)
		}
		// Differential check of the scanner against encoding/json, for inputs
		// within the grammar both accept (Python's NaN words aside).
		if strings.Contains(string(body), "NaN") || strings.Contains(string(body), "Infinity") {
			return
		}
		if strings.Count(string(body), "[")+strings.Count(string(body), "{") >= MaxDepth || longestDigitRun(body) > pyjson.MaxIntDigits {
			return // Python's limits, which encoding/json does not have
		}
		rawTopic, found, r := scanObject(body)
		wantTopic, wantFound, wantR := referenceReason(body)
		if r != wantR {
			t.Fatalf("scanObject(%q) reason %v, encoding/json says %v", body, r, wantR)
		}
		if r == OK && found != wantFound {
			t.Fatalf("scanObject(%q) found topic %v, encoding/json says %v", body, found, wantFound)
		}
		if r == OK && found && !bodyTopicEquals(rawTopic, []byte(wantTopic)) {
			t.Fatalf("scanObject(%q) topic %q, encoding/json says %q", body, rawTopic, wantTopic)
		}
		if r == OK {
			checkMembers(t, body)
		}
	})
}

func longestDigitRun(b []byte) int {
	longest, run := 0, 0
	for _, c := range b {
		if '0' <= c && c <= '9' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

// checkMembers compares Members' walk of a valid object with encoding/json's
// decoding of it (where the last of duplicate keys wins).
func checkMembers(t *testing.T, body []byte) {
	var want map[string]json.RawMessage
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("reference decode of %q: %v", body, err)
	}
	got := map[string][]byte{}
	if !Members(body, func(k string, v []byte) bool { got[k] = v; return true }) {
		t.Fatalf("Members rejected valid %q", body)
	}
	if len(got) != len(want) {
		t.Fatalf("Members(%q) found %d keys, encoding/json %d", body, len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], bytes.TrimSpace(v)) {
			t.Fatalf("Members(%q)[%q] = %q, encoding/json %q", body, k, got[k], v)
		}
	}
}

func BenchmarkValidate1KiB(b *testing.B) {
	p := &Policy{MaxBytes: 1 << 20}
	body := body(topic, `, "pad": "`+strings.Repeat("fedmsg ", 110)+`"`)
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		if r := p.Validate(2, len(body)+len(topic), []byte(topic), body); r != OK {
			b.Fatal(r)
		}
	}
}

func BenchmarkEncodingJSONValid1KiB(b *testing.B) {
	body := body(topic, `, "pad": "`+strings.Repeat("fedmsg ", 110)+`"`)
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		if !json.Valid(body) {
			b.Fatal("invalid")
		}
	}
}

func TestMembers(t *testing.T) {
	body := []byte(` { "topic" : "a.b", "msg": {"x": [1, "}]", {"y": null}]}, "i": -1.5e3,` +
		` "\u006dsg_id": "2026-\u00e9", "empty": {}, "list": [], "ok": true } `)
	type member struct{ key, value string }
	var got []member
	if !Members(body, func(k string, v []byte) bool {
		got = append(got, member{k, string(v)})
		return true
	}) {
		t.Fatal("Members rejected a valid object")
	}
	want := []member{
		{"topic", `"a.b"`}, {"msg", `{"x": [1, "}]", {"y": null}]}`}, {"i", "-1.5e3"},
		{"msg_id", `"2026-\u00e9"`}, {"empty", "{}"}, {"list", "[]"}, {"ok", "true"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("members:\n got %v\nwant %v", got, want)
	}
	if s, ok := StringValue([]byte(`"2026-\u00e9"`)); !ok || s != "2026-é" {
		t.Errorf("StringValue = %q, %v", s, ok)
	}
	stops := 0
	Members(body, func(string, []byte) bool { stops++; return stops < 2 })
	if stops != 2 {
		t.Errorf("fn called %d times after returning false at the 2nd member", stops)
	}
	for _, bad := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1} x`, `{"a":"}`, `{"a":[1}`, `{"a":1 "b":2}`} {
		if Members([]byte(bad), func(string, []byte) bool { return true }) {
			t.Errorf("Members accepted %q", bad)
		}
	}
}
