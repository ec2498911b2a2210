package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/client"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
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

// rawConfirmPeer does a DEALER's handshake by hand on a confirm endpoint,
// for what libzmq would never send.
func rawConfirmPeer(t *testing.T, ep string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", tcpAddr(ep))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ready := zmtp.ReadyCommand("DEALER")
	hello := append(append(slices.Clone(zmtp.Greeting), zmtp.FlagCommand, byte(len(ready))), ready...)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	return c
}

// With the Go engine, confirming clients that send an endless multipart
// message or an oversize frame are cut off, counted and logged, while
// fedmsg-logger --confirm's client is answered and the connections are
// counted on the confirm side.
func TestGoEngineConfirmHostileClients(t *testing.T) {
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	opts := testOptions(t)
	opts.InboundEngine, opts.BufferBytes, opts.MaxInboundConnections = transport.EngineGo, 1<<20, 100
	opts.MaxMessageBytes, opts.Confirm = 4096, []string{confirm}
	var logBuf testutil.SyncBuffer
	tr := runRelay(t, opts, hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Info}), nil)

	endless := rawConfirmPeer(t, confirm)
	go func() {
		frame := append([]byte{zmtp.FlagMore, 200}, bytes.Repeat([]byte("e"), 200)...)
		for endless.SetWriteDeadline(time.Now().Add(10*time.Second)) == nil {
			if _, err := endless.Write(frame); err != nil {
				return // cut off
			}
		}
	}()
	oversize := rawConfirmPeer(t, confirm)
	oversize.Write(append([]byte{zmtp.FlagLong}, binary.BigEndian.AppendUint64(nil, 1<<40)...))

	conn, err := client.DialConfirmer([]string{confirm}, 5*time.Second, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := conn.Send(testTopic, fedmsgBody(testTopic, i, "")); err != nil {
			t.Fatalf("good client's message %d: %v", i, err)
		}
	}
	for series, want := range map[string]string{
		`fedmsg_relay_disconnects_total{reason="oversize"}`:       "2",
		`fedmsg_relay_connections{side="confirm"}`:                "1",
		`fedmsg_relay_connections_accepted_total{side="confirm"}`: "3",
		`fedmsg_relay_connections{side="inbound"}`:                "0",
	} {
		tr.waitMetric(t, series, want)
	}
	conn.Close()
	tr.waitMetric(t, `fedmsg_relay_connections{side="confirm"}`, "0")
	if log := logBuf.String(); !strings.Contains(log, "confirming client disconnected: reason=oversize") {
		t.Errorf("no log line for the oversize confirm clients' disconnect:\n%s", log)
	}
}

// BenchmarkConfirmRoundTrip: fedmsg-logger --confirm's client sending one
// message and waiting for its "ok", lock-step, through either engine's
// confirm endpoint, in the same run for a ratio:
// go test -run '^$' -bench ConfirmRoundTrip ./internal/relay
func BenchmarkConfirmRoundTrip(b *testing.B) {
	for _, engine := range []string{transport.EngineLibzmq, transport.EngineGo} {
		b.Run(engine, func(b *testing.B) {
			confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
			opts := testOptions(b)
			opts.InboundEngine, opts.BufferBytes, opts.MaxInboundConnections = engine, 16<<20, 100
			opts.Confirm = []string{confirm}
			runRelay(b, opts, hclog.NewNullLogger(), nil)
			conn, err := client.DialConfirmer([]string{confirm}, 5*time.Second, hclog.NewNullLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			body := fedmsgBody(testTopic, 0, `, "pad": "`+strings.Repeat("x", 900)+`"`)
			b.ResetTimer()
			for range b.N {
				if err := conn.Send(testTopic, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
