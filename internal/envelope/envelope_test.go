package envelope

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

func TestTopic(t *testing.T) {
	b := &Builder{TopicPrefix: "org.fedoraproject", Environment: "prod"}
	cases := []struct{ modname, topic, want string }{
		{"logger", "log", "org.fedoraproject.prod.logger.log"},
		{"git", "receive", "org.fedoraproject.prod.git.receive"},
		{"git", "", "org.fedoraproject.prod.git.unspecified"},
		// fedmsg leaves a topic that already carries the prefix alone.
		{"org.fedoraproject.stg.bodhi", "update", "org.fedoraproject.stg.bodhi.update"},
	}
	for _, tc := range cases {
		if got := b.Topic(tc.modname, tc.topic); got != tc.want {
			t.Errorf("Topic(%q, %q) = %q, want %q", tc.modname, tc.topic, got, tc.want)
		}
	}
}

var msgIDPattern = regexp.MustCompile(`^2026-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestBuild(t *testing.T) {
	now := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	b := &Builder{TopicPrefix: "org.fedoraproject", Environment: "dev", Username: "jdoe",
		Now: func() time.Time { return now }}
	msgs := []string{`{"log": "a <b> & \"c\" é"}`, `{"n": 12345678901234567890, "f": 1.0}`, `[1, 2]`}
	for i, msg := range msgs {
		topic, body, err := b.Build("logger", "log", json.RawMessage(msg))
		if err != nil {
			t.Fatalf("Build(%s): %v", msg, err)
		}
		if topic != "org.fedoraproject.dev.logger.log" {
			t.Errorf("topic = %q", topic)
		}
		var env Body
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, []byte(msg))
		if string(env.Msg) != compact.String() {
			t.Errorf("msg = %s, want %s unchanged", env.Msg, compact.String())
		}
		if env.Topic != topic || env.Timestamp != now.Unix() || env.I != i+1 || env.Username != "jdoe" {
			t.Errorf("envelope %+v", env)
		}
		if !msgIDPattern.MatchString(env.MsgID) {
			t.Errorf("msg_id %q does not look like <year>-<uuid4>", env.MsgID)
		}
		if bytes.Contains(body, []byte(`\u003c`)) || bytes.Contains(body, []byte("\n")) {
			t.Errorf("body %s: HTML-escaped or multi-line", body)
		}
	}
}

func TestBuildRepairsInvalidUTF8(t *testing.T) {
	b := &Builder{TopicPrefix: "p", Environment: "dev"}
	_, body, err := b.Build("m", "t", json.RawMessage("{\"log\": \"caf\xe9 ok\"}"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte("\"msg\":{\"log\":\"caf\uFFFD ok\"}")) {
		t.Errorf("body %q: invalid byte not replaced by U+FFFD", body)
	}
}

func TestBuildRejectsInvalidJSON(t *testing.T) {
	b := &Builder{TopicPrefix: "p", Environment: "dev"}
	for _, msg := range []string{``, `{`, `{"a":1} x`} {
		if _, _, err := b.Build("m", "t", json.RawMessage(msg)); err == nil {
			t.Errorf("Build(%q) accepted invalid JSON", msg)
		}
	}
}

func TestUUID4Unique(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		b := &Builder{TopicPrefix: "p", Environment: "dev"}
		_, body, err := b.Build("m", "t", json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var env Body
		_ = json.Unmarshal(body, &env)
		if seen[env.MsgID] {
			t.Fatalf("duplicate msg_id %s", env.MsgID)
		}
		seen[env.MsgID] = true
	}
}

func TestUsername(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"LOGNAME": "a", "USER": "b", "LNAME": "c", "USERNAME": "d"}, "a"},
		{map[string]string{"LOGNAME": "", "USER": "b", "LNAME": "c", "USERNAME": "d"}, "b"},
		{map[string]string{"LOGNAME": "", "USER": "", "LNAME": "", "USERNAME": "d"}, "d"},
	}
	for _, tc := range cases {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		if got := Username(); got != tc.want {
			t.Errorf("Username() with %v = %q, want %q", tc.env, got, tc.want)
		}
	}
	for _, k := range []string{"LOGNAME", "USER", "LNAME", "USERNAME"} {
		t.Setenv(k, "")
	}
	if got := Username(); got == "" {
		t.Error("Username() with no environment is empty, want the uid's name")
	}
}
