package clients

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLoggerConfirmAcknowledged(t *testing.T) {
	r := startRelay(t)
	sub := subscribe(t, r)
	conf := emptyConfigDir(t)
	writeFile(t, conf, "relay.py", fmt.Sprintf("config = dict(relay_inbound_confirm=[%q])\n", r.Confirm))
	cases := []struct {
		name  string
		env   []string
		stdin string
		args  []string
		want  []string
	}{
		{"flag", nil, "", []string{"--confirm", "--relay-confirm", r.Confirm, "--message", "confirmed"}, []string{"confirmed"}},
		{"config", []string{"FEDMSG_CONFIG=" + conf}, "c1\nc2\nc3\n", []string{"--confirm"}, []string{"c1", "c2", "c3"}},
		{"environment", []string{"FEDMSG_RELAY_INBOUND_CONFIRM=" + r.Confirm}, "", []string{"--confirm", "--message", "env"}, []string{"env"}},
	}
	for _, tc := range cases {
		res := logger(t, tc.stdin, tc.env, tc.args...)
		if res.code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.name, res.code, res.stderr)
		}
		// Acknowledged means already published: each message must be there.
		for _, want := range tc.want {
			if m := sub.next(time.Second); !strings.Contains(m.Body, fmt.Sprintf(`{"log":%q}`, want)) {
				t.Errorf("%s: got %s, want log %q", tc.name, m.Body, want)
			}
		}
	}
	sub.expectNone(200 * time.Millisecond)
}

func TestLoggerConfirmRefused(t *testing.T) {
	r := startRelay(t, "topic_allowlist: [org.fedoraproject.dev.allowed, probe]") // probe: see probeUntil
	sub := subscribe(t, r)
	res := logger(t, "one\ntwo\n", nil, "--confirm", "--relay-confirm", r.Confirm)
	if res.code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", res.code, res.stderr)
	}
	for _, want := range []string{"reason=topic_not_allowed", "the relay refused 2 message(s)"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr %q lacks %q", res.stderr, want)
		}
	}
	// The same relay acknowledges an allowed topic, and only that one is published.
	res = logger(t, "", nil, "--confirm", "--relay-confirm", r.Confirm, "--modname", "allowed", "--message", "yes")
	if res.code != 0 {
		t.Fatalf("allowed topic: exit %d: %s", res.code, res.stderr)
	}
	if m := sub.next(time.Second); m.Topic != "org.fedoraproject.dev.allowed.log" {
		t.Errorf("published %+v", m)
	}
	sub.expectNone(200 * time.Millisecond)
}
