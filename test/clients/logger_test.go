package clients

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
)

// pyVerifier checks our logger's envelopes field by field with Python's own
// json, getpass and uuid, the way a fedmsg consumer would read them. It
// prints READY after the first probe, then a JSON list of problems once it
// has seen the expected messages.
const pyVerifier = `
import datetime, getpass, json, re, sys, time, uuid, zmq
expected = json.loads(sys.argv[2])
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(sys.argv[1])
ready = False
problems = []
def check(cond, what):
    if not cond:
        problems.append(what)
for exp in expected:
    while True:
        frames = sub.recv_multipart()
        if frames[0] != b"probe":
            break
        if not ready:
            ready = True
            print("READY", flush=True)
    check(len(frames) == 2, "frames: %d" % len(frames))
    topic = frames[0].decode("utf-8")
    body = json.loads(frames[1].decode("utf-8"))
    check(isinstance(body, dict), "body is not an object")
    check(sorted(body) == ["i", "msg", "msg_id", "timestamp", "topic", "username"], "keys %s" % sorted(body))
    check(topic == exp["topic"], "frame topic %r" % topic)
    check(body["topic"] == topic, "body topic %r != frame %r" % (body["topic"], topic))
    check(body["msg"] == exp["msg"], "msg %r != %r" % (body["msg"], exp["msg"]))
    check(type(body["timestamp"]) is int and abs(body["timestamp"] - time.time()) < 60, "timestamp %r" % body["timestamp"])
    year = str(datetime.datetime.now().year)
    check(re.fullmatch(year + r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", body["msg_id"]) is not None, "msg_id %r" % body["msg_id"])
    u = uuid.UUID(body["msg_id"][len(year) + 1:])
    check(u.version == 4 and u.variant == uuid.RFC_4122, "msg_id is not a uuid4: %r" % body["msg_id"])
    check(type(body["i"]) is int and body["i"] == exp["i"], "i %r != %r" % (body["i"], exp["i"]))
    check(body["username"] == getpass.getuser(), "username %r != %r" % (body["username"], getpass.getuser()))
print(json.dumps(problems), flush=True)
`

func TestLoggerEnvelopeCheckedByPython(t *testing.T) {
	r := startRelay(t)
	conf := emptyConfigDir(t)
	writeFile(t, conf, "base.py", "config = dict(topic_prefix='org.example', environment='stg')\n")
	writeFile(t, conf, "relay.py", fmt.Sprintf("config = dict(relay_inbound=[%q])\n", r.Inbound))
	env := []string{"FEDMSG_CONFIG=" + conf, "LOGNAME=fedmsg-test-user"}

	input := "hello\n   spaced out   \n\"quotes\" \\ back\tslash é 😀 <&>\n\n"
	var expected []map[string]any
	for i, line := range []string{"hello", "spaced out", "\"quotes\" \\ back\tslash é 😀 <&>", ""} {
		expected = append(expected, map[string]any{
			"topic": "org.example.stg.git.receive", "msg": map[string]string{"log": line}, "i": i + 1})
	}
	want, _ := json.Marshal(expected)
	verifier := exec.Command(clienttest.RequirePython(t), "-c", pyVerifier, r.Outbound, string(want))
	verifier.Env = append(verifier.Environ(), env...)
	out := startProcess(t, verifier)
	ready := make(chan struct{})
	verdict := make(chan string, 1)
	go func() {
		if line, _ := out.ReadString('\n'); line == "READY\n" {
			close(ready)
		}
		line, _ := out.ReadString('\n')
		verdict <- line
	}()
	probeUntil(t, r, ready)

	res := runCmd(t, input, env, bin("fedmsg-logger"), "--modname", "git", "--topic", "receive")
	if res.code != 0 {
		t.Fatalf("fedmsg-logger exit %d: %s", res.code, res.stderr)
	}
	select {
	case v := <-verdict:
		if strings.TrimSpace(v) != "[]" {
			t.Fatalf("Python found problems in our envelopes: %s", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Python verifier did not see all messages")
	}
}

// pyFedmsgProducer publishes like fedmsg-logger did: PUB connect, linger,
// sleep post_init_sleep, send, exit.
const pyFedmsgProducer = `
import json, sys, time, zmq
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.setsockopt(zmq.LINGER, 1000)
pub.connect(sys.argv[1])
time.sleep(0.5)
n, label = int(sys.argv[2]), sys.argv[3]
for k in range(n):
    topic = "org.fedoraproject.dev.logger.log"
    body = {"topic": topic, "msg": {"log": "%s-%d" % (label, k)}, "timestamp": int(time.time()),
            "msg_id": "2026-00000000-0000-4000-8000-%012d" % k, "i": k + 1, "username": "py"}
    pub.send_multipart([topic.encode(), json.dumps(body).encode()], flags=zmq.NOBLOCK)
    if k + 1 < n:
        time.sleep(0.01)
pub.close()
ctx.term()
`

func TestLoggerInterleavedWithPythonProducer(t *testing.T) {
	r := startRelay(t)
	sub := subscribe(t, r)
	const n = 20
	py := exec.Command(clienttest.RequirePython(t), "-c", pyFedmsgProducer, r.Inbound, fmt.Sprint(n), "py")
	pyDone := make(chan error, 1)
	if err := py.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pyDone <- py.Wait() }()
	for k := 0; k < n; k++ {
		if res := logger(t, "", nil, "--relay", r.Inbound, "--message", fmt.Sprintf("go-%d", k)); res.code != 0 {
			t.Fatalf("fedmsg-logger exit %d: %s", res.code, res.stderr)
		}
		time.Sleep(20 * time.Millisecond) // spread our runs across the Python sends
	}
	if err := <-pyDone; err != nil {
		t.Fatalf("python producer: %v", err)
	}
	seen := map[string]bool{}
	for len(seen) < 2*n {
		m := sub.next(10 * time.Second)
		var body struct {
			Msg struct{ Log string } `json:"msg"`
		}
		if err := json.Unmarshal([]byte(m.Body), &body); err != nil {
			t.Fatalf("body %q: %v", m.Body, err)
		}
		if seen[body.Msg.Log] {
			t.Fatalf("duplicate %q", body.Msg.Log)
		}
		seen[body.Msg.Log] = true
	}
	for k := 0; k < n; k++ {
		for _, id := range []string{fmt.Sprintf("go-%d", k), fmt.Sprintf("py-%d", k)} {
			if !seen[id] {
				t.Errorf("%s missing", id)
			}
		}
	}
}

func TestLoggerInputForms(t *testing.T) {
	r := startRelay(t)
	sub := subscribe(t, r)
	cases := []struct {
		name  string
		stdin string
		args  []string
		want  []string // compact msg payloads, in order
	}{
		{"message flag", "", []string{"--message", "  one line  "}, []string{`{"log":"one line"}`}},
		{"json message flag", "", []string{"--json-input", "--message", `{"a": [1, 2.50]}`}, []string{`{"a":[1,2.50]}`}},
		{"json documents", "{\"a\": 1}\n{\"n\": 12345678901234567890}\n{\n  \"pretty\": {\"x\": \"y\"}\n}\n",
			[]string{"--json-input"}, []string{`{"a":1}`, `{"n":12345678901234567890}`, `{"pretty":{"x":"y"}}`}},
		{"no final newline", "a\nb", nil, []string{`{"log":"a"}`, `{"log":"b"}`}},
	}
	for _, tc := range cases {
		res := logger(t, tc.stdin, nil, append([]string{"--relay", r.Inbound}, tc.args...)...)
		if res.code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.name, res.code, res.stderr)
		}
		for _, want := range tc.want {
			m := sub.next(5 * time.Second)
			var body struct{ Msg json.RawMessage }
			if err := json.Unmarshal([]byte(m.Body), &body); err != nil || string(body.Msg) != want {
				t.Errorf("%s: msg %s (%v), want %s", tc.name, body.Msg, err, want)
			}
		}
	}
	sub.expectNone(200 * time.Millisecond)
}

func TestLoggerFailures(t *testing.T) {
	r := startRelay(t)
	dead1, dead2 := freeAddress(t), freeAddress(t)
	cases := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{"relay down", "hi\n", []string{"--relay", dead1 + "," + dead2, "--timeout", "300ms"},
			1, []string{"no relay answered within 300ms", dead1, dead2}},
		{"confirm relay down", "hi\n", []string{"--confirm", "--relay-confirm", dead1, "--timeout", "0.3"},
			1, []string{"no relay answered within 300ms", dead1}},
		{"confirm without address", "hi\n", []string{"--confirm"}, 1, []string{"relay_inbound_confirm"}},
		{"invalid json", "{\"a\":\n", []string{"--relay", r.Inbound, "--json-input"}, 1, []string{"invalid JSON"}},
		{"bad timeout", "", []string{"--timeout", "soon"}, 2, []string{"duration"}},
		{"stray argument", "", []string{"extra"}, 2, []string{"unexpected arguments"}},
	}
	for _, tc := range cases {
		res := logger(t, tc.stdin, nil, tc.args...)
		if res.code != tc.wantCode {
			t.Errorf("%s: %v exit %d, want %d; stderr %s", tc.name, tc.args, res.code, tc.wantCode, res.stderr)
		}
		for _, s := range tc.wantStderr {
			if !strings.Contains(res.stderr, s) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, res.stderr, s)
			}
		}
		if res.elapsed > 3*time.Second {
			t.Errorf("%s: took %s, want well under the timeout plus startup", tc.name, res.elapsed)
		}
	}
}

func TestLoggerFailover(t *testing.T) {
	r := startRelay(t)
	sub := subscribe(t, r)
	res := logger(t, "", nil, "--relay", freeAddress(t), "--relay", r.Inbound, "--message", "failover")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if m := sub.next(5 * time.Second); !strings.Contains(m.Body, `"failover"`) {
		t.Fatalf("got %+v", m)
	}
}

func TestLoggerConfigSources(t *testing.T) {
	r := startRelay(t)
	sub := subscribe(t, r)
	dead := freeAddress(t)
	good := emptyConfigDir(t)
	goodFile := writeFile(t, good, "relay.py", fmt.Sprintf(
		"config = dict(topic_prefix='org.example', environment='stg', relay_inbound=%q)\n", r.Inbound))
	bad := emptyConfigDir(t)
	writeFile(t, bad, "relay.py", fmt.Sprintf("config = dict(relay_inbound=%q)\n", dead))
	cases := []struct {
		name      string
		env       []string
		args      []string
		wantTopic string
	}{
		{"FEDMSG_CONFIG directory", []string{"FEDMSG_CONFIG=" + good}, nil, "org.example.stg.logger.log"},
		{"FEDMSG_CONFIG file", []string{"FEDMSG_CONFIG=" + goodFile}, nil, "org.example.stg.logger.log"},
		{"--config-dir", []string{"FEDMSG_CONFIG=" + bad}, []string{"--config-dir", good}, "org.example.stg.logger.log"},
		{"--config-filename", []string{"FEDMSG_CONFIG=" + bad}, []string{"--config-filename", goodFile}, "org.example.stg.logger.log"},
		{"FEDMSG_RELAY_INBOUND over config", []string{"FEDMSG_CONFIG=" + bad, "FEDMSG_RELAY_INBOUND=" + r.Inbound}, nil, "org.fedoraproject.dev.logger.log"},
		{"--relay over FEDMSG_RELAY_INBOUND", []string{"FEDMSG_RELAY_INBOUND=" + dead}, []string{"--relay", r.Inbound}, "org.fedoraproject.dev.logger.log"},
		{"--topic-prefix", []string{"FEDMSG_CONFIG=" + good}, []string{"--topic-prefix", "io.pagure"}, "io.pagure.stg.logger.log"},
	}
	for _, tc := range cases {
		res := logger(t, "", tc.env, append(tc.args, "--timeout", "2s", "--message", tc.name)...)
		if res.code != 0 {
			t.Errorf("%s: exit %d: %s", tc.name, res.code, res.stderr)
			continue
		}
		if m := sub.next(5 * time.Second); m.Topic != tc.wantTopic || !strings.Contains(m.Body, tc.name) {
			t.Errorf("%s: got %+v, want topic %s", tc.name, m, tc.wantTopic)
		}
	}
}

// TestLoggerThousandRuns is the lost-message check: without a sleep, every
// one of 1,000 short-lived runs must reach a subscriber.
func TestLoggerThousandRuns(t *testing.T) {
	r := startRelay(t)
	sub := subscribe(t, r)
	const runs = 1000
	env := []string{"FEDMSG_CONFIG=" + emptyConfigDir(t)}
	start := time.Now()
	for k := 0; k < runs; k++ {
		res := runCmd(t, "", env, bin("fedmsg-logger"), "--relay", r.Inbound, "--message", fmt.Sprintf("run-%d", k))
		if res.code != 0 {
			t.Fatalf("run %d: exit %d: %s", k, res.code, res.stderr)
		}
	}
	elapsed := time.Since(start)
	seen := map[string]bool{}
	for len(seen) < runs {
		m := sub.next(10 * time.Second)
		seen[m.Body[strings.Index(m.Body, "run-"):strings.Index(m.Body, `"}`)]] = true
	}
	t.Logf("%d runs in %s (%s per run), %d distinct messages seen", runs, elapsed, elapsed/runs, len(seen))
	sub.expectNone(100 * time.Millisecond)
}

// TestLoggerSurvivesRelayRestart feeds a long-running fedmsg-logger (as in
// `journalctl -f | fedmsg-logger`) across a relay restart: like libzmq's
// reconnect, it must dial again and keep delivering.
func TestLoggerSurvivesRelayRestart(t *testing.T) {
	r := startRelay(t)
	sub := subscribe(t, r)
	cmd := exec.Command(bin("fedmsg-logger"), "--relay", r.Inbound, "--timeout", "10s")
	cmd.Env = append(cmd.Environ(), "FEDMSG_CONFIG="+emptyConfigDir(t))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "before")
	if m := sub.next(5 * time.Second); !strings.Contains(m.Body, `"before"`) {
		t.Fatalf("got %+v", m)
	}
	r.stop(t)
	r.start(t)
	sub = subscribe(t, r)
	fmt.Fprintln(stdin, "after")
	if m := sub.next(10 * time.Second); !strings.Contains(m.Body, `"after"`) {
		t.Fatalf("got %+v", m)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fedmsg-logger: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "dialling again") {
		t.Errorf("no reconnection logged: %s", stderr.String())
	}
}
