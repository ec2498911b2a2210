package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/client"
	"github.com/fedora-infra/fedmsg-relay/internal/logging/logtest"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
	"github.com/fedora-infra/fedmsg-relay/internal/wire"
)

// testRelay is a relay running in this process on free loopback ports.
type testRelay struct {
	*Relay
	opts     Options
	reg      *metrics.Registry
	inbound  string
	outbound string
}

// testOptions are the configuration's defaults on free loopback ports.
func testOptions(t testing.TB) Options {
	return Options{
		Options: transport.Options{
			Inbound:                []string{fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))},
			Outbound:               []string{fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))},
			MaxMessageBytes:        1 << 20,
			InboundHWM:             10000,
			OutboundHWM:            10000,
			HandshakeTimeout:       10 * time.Second,
			HeartbeatInterval:      30 * time.Second,
			TCPKeepalive:           true,
			BufferBytes:            16 << 20, // the one byte budget (Budget nil: made of this)
			MaxOutboundConnections: 1000,
		},
		DrainTimeout:    time.Second,
		DropLogInterval: 10 * time.Second,
	}
}

func startRelay(t *testing.T, mutate func(*Options)) *testRelay {
	t.Helper()
	opts := testOptions(t)
	if mutate != nil {
		mutate(&opts)
	}
	return runRelay(t, opts, logtest.ForTest(t), nil)
}

// runRelay creates a relay, lets setup register what must precede Run (a
// tap), and runs it until the test ends.
func runRelay(t testing.TB, opts Options, log hclog.Logger, setup func(*Relay)) *testRelay {
	t.Helper()
	reg := metrics.NewRegistry()
	r, err := New(opts, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// Tests start once the loop runs, so nothing they observe (such as the
	// monitoring status) races the goroutine's start.
	for !r.running.Load() {
		select {
		case err := <-done:
			t.Fatalf("Run returned before forwarding: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		r.Close()
	})
	return &testRelay{Relay: r, opts: opts, reg: reg, inbound: opts.Inbound[0], outbound: opts.Outbound[0]}
}

// metric returns the value of one series in the Prometheus text output.
func (tr *testRelay) metric(t *testing.T, series string) string {
	t.Helper()
	var b strings.Builder
	if err := tr.reg.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	t.Fatalf("no series %s in:\n%s", series, b.String())
	return ""
}

// waitMetric polls until series has the wanted value: counters are updated
// once per batch, after the messages have been sent.
func (tr *testRelay) waitMetric(t *testing.T, series, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := tr.metric(t, series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %s, want %s", series, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fedmsgBody(topic string, i int, extra string) []byte {
	return []byte(fmt.Sprintf(`{"topic": %q, "msg": {"n": %d%s}, "i": %d, "timestamp": 1764115200, "msg_id": "2026-%08d-0000-4000-8000-000000000000", "username": "relaytest"}`, topic, i, extra, i, i))
}

const testTopic = "org.fedoraproject.test.relay.msg"

// Producers and listeners are pyzmq on libzmq: bodies arrive byte for byte,
// every listener gets every message, and each producer's order is kept.
func TestRelaysPythonProducersToPythonListeners(t *testing.T) {
	tr := startRelay(t, nil)
	const producers, perProducer = 3, 200
	var sent [][][][]byte
	for p := 0; p < producers; p++ {
		var msgs [][][]byte
		for i := 0; i < perProducer; i++ {
			topic := fmt.Sprintf("%s.p%d", testTopic, p)
			// Vary the bytes: non-ASCII, escapes, spacing kept as sent.
			body := fedmsgBody(topic, i, fmt.Sprintf(`, "text": "caf\u00e9 \\\"q\\\" %s",   "raw": "é"`, strings.Repeat("y", i)))
			msgs = append(msgs, [][]byte{[]byte(topic), body})
		}
		sent = append(sent, msgs)
	}
	got := testutil.RunScenario(t, testutil.Scenario{
		Inbound: tr.inbound, Outbound: tr.outbound, Subscribers: 2, Producers: sent, Idle: 5, Expect: producers * perProducer,
	})
	for s, msgs := range got {
		if len(msgs) != producers*perProducer {
			t.Fatalf("subscriber %d got %d messages, want %d", s, len(msgs), producers*perProducer)
		}
		next := make([]int, producers)
		for _, m := range msgs {
			var p int
			if _, err := fmt.Sscanf(string(m[0]), testTopic+".p%d", &p); err != nil || p >= producers {
				t.Fatalf("unexpected topic %q", m[0])
			}
			want := sent[p][next[p]]
			if len(m) != 2 || !bytes.Equal(m[0], want[0]) || !bytes.Equal(m[1], want[1]) {
				t.Fatalf("subscriber %d: producer %d message %d changed or out of order:\ngot  %q\nwant %q", s, p, next[p], m, want)
			}
			next[p]++
		}
	}
	// Probes and messages: everything received was relayed.
	tr.waitMetric(t, `fedmsg_relay_relayed_total`, tr.metric(t, `fedmsg_relay_received_total{source="inbound"}`))
}

// Bad messages are dropped and counted by reason; good ones around them
// still arrive, in order.
func TestDropsBadMessagesAndKeepsServing(t *testing.T) {
	tr := startRelay(t, func(c *Options) {
		c.AllowedTopicPrefixes = []string{"org.fedoraproject.test"}
		c.MaxMessageBytes = 4096
	})
	good := func(i int) [][]byte { return [][]byte{[]byte(testTopic), fedmsgBody(testTopic, i, "")} }
	bad := []struct {
		reason string
		frames [][]byte
	}{
		{"frames", [][]byte{[]byte(testTopic)}},
		{"frames", [][]byte{[]byte(testTopic), fedmsgBody(testTopic, 0, ""), []byte("third")}},
		{"empty_topic", [][]byte{{}, fedmsgBody("", 0, "")}},
		{"topic_not_utf8", [][]byte{[]byte("org.fedoraproject.test.\xff"), fedmsgBody(testTopic, 0, "")}},
		{"body_not_json", [][]byte{[]byte(testTopic), []byte("this is not json")}},
		{"body_not_json", [][]byte{[]byte(testTopic), []byte(`{"topic": "` + testTopic + `", "msg": {`)}},
		{"body_not_object", [][]byte{[]byte(testTopic), []byte(`["a", "list"]`)}},
		{"topic_mismatch", [][]byte{[]byte(testTopic), fedmsgBody("org.fedoraproject.test.other", 0, "")}},
		{"topic_not_allowed", [][]byte{[]byte("org.example.x"), fedmsgBody("org.example.x", 0, "")}},
		// Each frame under libzmq's per-frame limit, together over it.
		{"oversize", [][]byte{[]byte(testTopic + strings.Repeat("t", 2100)), fedmsgBody(testTopic+strings.Repeat("t", 2100), 0, "")}},
	}
	var msgs [][][]byte
	wantDrops := map[string]int{}
	for i, b := range bad {
		msgs = append(msgs, good(i), b.frames)
		wantDrops[b.reason]++
	}
	msgs = append(msgs, good(len(bad)))
	got := testutil.RunScenario(t, testutil.Scenario{
		Inbound: tr.inbound, Outbound: tr.outbound, Subscribers: 1, Producers: [][][][]byte{msgs}, Idle: 5, Expect: len(bad) + 1,
	})[0]
	if len(got) != len(bad)+1 {
		t.Fatalf("got %d messages, want the %d good ones: %q", len(got), len(bad)+1, got)
	}
	for i, m := range got {
		if want := good(i); !bytes.Equal(m[1], want[1]) {
			t.Errorf("message %d = %q, want %q", i, m[1], want[1])
		}
	}
	for reason, n := range wantDrops {
		tr.waitMetric(t, fmt.Sprintf(`fedmsg_relay_dropped_total{reason=%q}`, reason), fmt.Sprint(n))
	}
}

// A frame over max_message_bytes makes libzmq cut that producer off before
// allocating; other producers are not affected.
func TestOversizeFrameCutsOffOnlyItsSender(t *testing.T) {
	tr := startRelay(t, func(c *Options) { c.MaxMessageBytes = 1024 })
	huge := [][]byte{[]byte(testTopic), fedmsgBody(testTopic, 0, `, "pad": "`+strings.Repeat("x", 4096)+`"`)}
	ok := [][]byte{[]byte(testTopic), fedmsgBody(testTopic, 1, "")}
	got := testutil.RunScenario(t, testutil.Scenario{
		Inbound: tr.inbound, Outbound: tr.outbound, Subscribers: 1,
		Producers: [][][][]byte{{huge}, {ok, ok, ok}}, Idle: 5, Expect: 3,
	})[0]
	if len(got) != 3 {
		t.Fatalf("got %d messages, want the other producer's 3", len(got))
	}
	tr.waitMetric(t, `fedmsg_relay_relayed_total`, tr.metric(t, `fedmsg_relay_received_total{source="inbound"}`))
}

// Confirmed delivery, with either inbound engine: a DEALER gets "ok" once
// the message is published, and "refused:<reason>" for a message the relay
// will not publish, one reply per message in order, whether it is libzmq
// (pebbe, pyzmq) or the Go client; with the Go engine a REQ too.
func TestConfirmedDelivery(t *testing.T) {
	py := testutil.Python(t)
	for _, engine := range []string{transport.EngineLibzmq, transport.EngineGo} {
		t.Run(engine, func(t *testing.T) {
			confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
			tr := startRelay(t, func(c *Options) {
				c.Confirm = []string{confirm}
				c.InboundEngine, c.BufferBytes, c.MaxInboundConnections = engine, 16<<20, 100
			})
			testConfirmedDelivery(t, tr, py, confirm, engine == transport.EngineGo)
		})
	}
}

func testConfirmedDelivery(t *testing.T, tr *testRelay, py, confirm string, withREQ bool) {
	sub := newSocket(t, zmq.SUB)
	must(t, sub.SetSubscribe(""))
	must(t, sub.Connect(tr.outbound))
	dealer := newSocket(t, zmq.DEALER)
	must(t, dealer.SetRcvtimeo(5*time.Second))
	must(t, dealer.Connect(confirm))

	// The subscriber may join late (PUB/SUB): confirm until it sees one.
	must(t, sub.SetRcvtimeo(50*time.Millisecond))
	good := fedmsgBody(testTopic, 1, "")
	for joined := false; !joined; {
		if _, err := dealer.SendMessage(testTopic, good); err != nil {
			t.Fatal(err)
		}
		if reply, err := dealer.Recv(0); err != nil || reply != "ok" {
			t.Fatalf("reply %q, %v; want ok", reply, err)
		}
		_, err := sub.RecvMessageBytes(0)
		joined = err == nil
	}
	tests := []struct {
		frames [][]byte
		reply  string
	}{
		{[][]byte{[]byte(testTopic), good}, "ok"},
		{[][]byte{[]byte(testTopic), fedmsgBody("org.fedoraproject.other", 1, "")}, "refused:topic_mismatch"},
		{[][]byte{[]byte(testTopic), []byte("nope")}, "refused:body_not_json"},
		{[][]byte{[]byte(testTopic)}, "refused:frames"},
		{[][]byte{[]byte(testTopic), good}, "ok"},
	}
	for _, tt := range tests {
		if _, err := dealer.SendMessage(tt.frames); err != nil {
			t.Fatal(err)
		}
		reply, err := dealer.Recv(0)
		if err != nil || reply != tt.reply {
			t.Errorf("send %q: reply %q, %v; want %q", tt.frames, reply, err, tt.reply)
		}
	}
	tr.waitMetric(t, `fedmsg_relay_dropped_total{reason="frames"}`, "1")

	// The Go client (fedmsg-logger --confirm), two frames only.
	conn, err := client.DialConfirmer([]string{confirm}, 5*time.Second, logtest.ForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tt := range tests {
		if len(tt.frames) != 2 {
			continue
		}
		err := conn.Send(string(tt.frames[0]), tt.frames[1])
		var refused *client.RefusedError
		switch {
		case tt.reply == "ok" && err != nil,
			tt.reply != "ok" && (!errors.As(err, &refused) || "refused:"+refused.Reason != tt.reply):
			t.Errorf("Go client send %q: %v; want %q", tt.frames, err, tt.reply)
		}
	}

	// pyzmq clients send the whole table, a DEALER pipelining it.
	kinds := []string{"DEALER"}
	if withREQ {
		kinds = append(kinds, "REQ")
	}
	var frames [][]string
	var want []string
	for _, tt := range tests {
		var f []string
		for _, b := range tt.frames {
			f = append(f, string(b))
		}
		frames, want = append(frames, f), append(want, tt.reply)
	}
	input, _ := json.Marshal(map[string]any{"kinds": kinds, "messages": frames})
	script := `
import json, sys, zmq
req = json.load(sys.stdin)
ctx = zmq.Context()
out = {}
for kind in req["kinds"]:
    s = ctx.socket(getattr(zmq, kind))
    s.rcvtimeo = 5000
    s.connect(sys.argv[1])
    msgs = [[f.encode() for f in m] for m in req["messages"]]
    replies = []
    for m in msgs:
        s.send_multipart(m)
        if kind == "REQ":
            replies.append(s.recv().decode())
    if kind == "DEALER":
        replies = [s.recv().decode() for _ in msgs]
    out[kind] = replies
    s.close(linger=0)
print(json.dumps(out))
`
	cmd := exec.Command(py, "-c", script, confirm)
	cmd.Stdin = bytes.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pyzmq clients: %v\n%s", err, out)
	}
	var got map[string][]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("pyzmq clients' output: %v\n%s", err, out)
	}
	for _, kind := range kinds {
		if !slices.Equal(got[kind], want) {
			t.Errorf("pyzmq %s replies %q, want %q", kind, got[kind], want)
		}
	}
}

// The monitoring socket publishes the single-frame moksha status that
// Fedora's nagios plugins read, and its file has the configured mode.
func TestMonitoringSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitoring-fedmsg-relay.socket")
	tr := startRelay(t, func(c *Options) {
		c.Monitoring = MonitoringOptions{Endpoint: "ipc://" + path, SocketMode: 0o770, Interval: 100 * time.Millisecond}
	})
	mon, err := tr.StartMonitoring(logtest.ForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Stop()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o770 || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file: %v %v", st, err)
	}
	sub := newSocket(t, zmq.SUB)
	must(t, sub.SetSubscribe(""))
	must(t, sub.SetRcvtimeo(5*time.Second))
	must(t, sub.Connect("ipc://"+path))
	frames, err := sub.RecvMessageBytes(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 1 {
		t.Fatalf("status has %d frames, want 1", len(frames))
	}
	var doc struct {
		Consumers []struct {
			Name        string `json:"name"`
			Initialized bool   `json:"initialized"`
			Backlog     *int   `json:"backlog"`
			Exceptions  *int   `json:"exceptions"`
		} `json:"consumers"`
		Producers []struct {
			Name        string `json:"name"`
			Initialized bool   `json:"initialized"`
		} `json:"producers"`
	}
	if err := json.Unmarshal(frames[0], &doc); err != nil {
		t.Fatalf("status %q: %v", frames[0], err)
	}
	if len(doc.Consumers) != 1 || doc.Consumers[0].Name != "RelayConsumer" || !doc.Consumers[0].Initialized ||
		doc.Consumers[0].Backlog == nil || doc.Consumers[0].Exceptions == nil {
		t.Errorf("consumers = %s", frames[0])
	}
	if len(doc.Producers) != 1 || doc.Producers[0].Name != "MonitoringProducer" || !doc.Producers[0].Initialized {
		t.Errorf("producers = %s", frames[0])
	}
}

func newSocket(t *testing.T, typ zmq.Type) *zmq.Socket {
	t.Helper()
	s, err := zmq.NewSocket(typ)
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.SetLinger(0))
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A relay that cannot bind says which address, and leaves nothing open.
func TestBindConflictIsAClearError(t *testing.T) {
	tr := startRelay(t, nil)
	cfg := testOptions(t)
	cfg.Outbound = []string{tr.outbound}
	for i := 0; i < 3; i++ { // repeatedly: a leak would show as a hang or crash
		_, err := New(cfg, logtest.ForTest(t), metrics.NewRegistry())
		if err == nil || !strings.Contains(err.Error(), "bind "+tr.outbound) {
			t.Fatalf("New with a taken outbound address: %v", err)
		}
	}
	cfg.Outbound = []string{fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))}
	cfg.Inbound = []string{tr.inbound}
	if _, err := New(cfg, logtest.ForTest(t), metrics.NewRegistry()); err == nil || !strings.Contains(err.Error(), "bind "+tr.inbound) {
		t.Fatalf("New with a taken inbound address: %v", err)
	}
}

// ipc:// and IPv6 tcp:// endpoints work for producers and listeners alike.
func TestIPCAndIPv6Endpoints(t *testing.T) {
	dir := t.TempDir()
	tr := startRelay(t, func(c *Options) {
		c.IPv6 = true
		c.Inbound = []string{"ipc://" + filepath.Join(dir, "in.sock"), fmt.Sprintf("tcp://[::1]:%d", testutil.FreePort(t))}
		c.Outbound = []string{fmt.Sprintf("tcp://[::1]:%d", testutil.FreePort(t))}
	})
	for _, in := range tr.opts.Inbound {
		msg := [][]byte{[]byte(testTopic), fedmsgBody(testTopic, 1, `, "via": "`+in+`"`)}
		got := testutil.RunScenario(t, testutil.Scenario{
			Inbound: in, Outbound: tr.outbound, Subscribers: 1, Producers: [][][][]byte{{msg}}, Idle: 5, Expect: 1,
		})[0]
		if len(got) != 1 || !bytes.Equal(got[0][1], msg[1]) {
			t.Errorf("via %s to %s: got %q", in, tr.outbound, got)
		}
	}
}

// Drops are logged at most once per interval and reason, with a count of
// those not logged, so a flood of bad input cannot flood the log.
func TestDropLogIsRateLimited(t *testing.T) {
	var logBuf testutil.SyncBuffer
	cfg := testOptions(t)
	cfg.DropLogInterval = time.Hour
	r, err := New(cfg, hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Info}), metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done; r.Close() }()

	pub := newSocket(t, zmq.PUB)
	must(t, pub.SetSndhwm(0))
	must(t, pub.Connect(cfg.Inbound[0]))
	const floods = 2000
	deadline := time.Now().Add(10 * time.Second)
	for sent := 0; ; sent++ {
		_, _ = pub.SendMessage(testTopic, "not json")
		_, _ = pub.SendMessage(testTopic)
		if sent >= floods && r.stats.dropped[wire.BodyNotJSON].Value() >= floods {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay saw %d of the bad messages", r.stats.dropped[wire.BodyNotJSON].Value())
		}
	}
	lines := strings.Count(logBuf.String(), "dropped message")
	if lines != 2 { // one per reason: body_not_json and frames
		t.Fatalf("%d drop log lines for %d drops, want 2:\n%s", lines, 2*floods, logBuf.String())
	}
}
