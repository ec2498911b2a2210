package relay

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
)

// The Go inbound engine through the whole relay: pyzmq producers' good
// messages arrive byte for byte, bad ones are dropped with the reasons the
// libzmq engine gives, and a message over max_message_bytes cuts its sender
// off, counted and logged by reason.
func TestGoInboundEngine(t *testing.T) {
	opts := testOptions(t)
	opts.InboundEngine, opts.BufferBytes, opts.MaxInboundConnections = transport.EngineGo, 16<<20, 100
	opts.MaxMessageBytes = 4096
	var logBuf testutil.SyncBuffer
	tr := runRelay(t, opts, hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Info}), nil)
	good := func(i int) [][]byte { return [][]byte{[]byte(testTopic), fedmsgBody(testTopic, i, "")} }
	bad := [][][]byte{
		{[]byte(testTopic), fedmsgBody(testTopic, 0, ""), []byte("third")},
		{[]byte(testTopic), []byte("this is not json")},
		{[]byte(testTopic + strings.Repeat("t", 2100)), fedmsgBody(testTopic+strings.Repeat("t", 2100), 0, "")},
	}
	var msgs [][][]byte
	for i, b := range bad {
		msgs = append(msgs, good(i), b)
	}
	msgs = append(msgs, good(len(bad)))
	huge := [][]byte{[]byte(testTopic), fedmsgBody(testTopic, 0, `, "pad": "`+strings.Repeat("x", 8192)+`"`)}
	got := testutil.RunScenario(t, testutil.Scenario{
		Inbound: tr.inbound, Outbound: tr.outbound, Subscribers: 1,
		Producers: [][][][]byte{msgs, {huge}}, Idle: 5, Expect: len(bad) + 1,
	})[0]
	if len(got) != len(bad)+1 {
		t.Fatalf("got %d messages, want the %d good ones", len(got), len(bad)+1)
	}
	for i, m := range got {
		if want := good(i); !bytes.Equal(m[0], want[0]) || !bytes.Equal(m[1], want[1]) {
			t.Errorf("message %d = %q, want %q", i, m, want)
		}
	}
	for series, want := range map[string]string{
		`fedmsg_relay_dropped_total{reason="frames"}`:        "1",
		`fedmsg_relay_dropped_total{reason="body_not_json"}`: "1",
		`fedmsg_relay_dropped_total{reason="oversize"}`:      "1",
		`fedmsg_relay_disconnects_total{reason="oversize"}`:  "1",
		`fedmsg_relay_connections{side="inbound"}`:           "0",
	} {
		tr.waitMetric(t, series, want)
	}
	if log := logBuf.String(); !strings.Contains(log, "inbound producer disconnected: reason=oversize") {
		t.Errorf("no log line for the oversize sender's disconnect:\n%s", log)
	}
	assertRelays(t, tr)
}
