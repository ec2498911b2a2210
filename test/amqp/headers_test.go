package amqp

import (
	"encoding/json"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// pikaReader reads the messages with the given ids from a queue with pika,
// the Python AMQP client fedora-messaging is built on, and prints each one's
// id and headers as a JSON line.
const pikaReader = `
import decimal, json, sys, time
import pika

def tagged(v):
    if isinstance(v, decimal.Decimal):
        return {"decimal": str(v)}
    raise TypeError(type(v))

url, queue, want = sys.argv[1], sys.argv[2], set(sys.argv[3:])
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
deadline = time.monotonic() + 30
while want and time.monotonic() < deadline:
    method, props, body = ch.basic_get(queue, auto_ack=True)
    if method is None:
        time.sleep(0.05)
        continue
    if props.message_id in want:
        want.discard(props.message_id)
        print(json.dumps({"id": props.message_id, "headers": props.headers}, default=tagged), flush=True)
conn.close()
sys.exit(1 if want else 0)
`

// Issue 11's bridge parity: a fedmsg envelope's "headers" arrive as AMQP
// headers beside fedora-messaging's (which win a clash), as Fedora's
// fedmsg-migration-tools bridge sent them; read back by a Python client.
func TestEnvelopeHeadersReachAMQP(t *testing.T) {
	broker := amqptest.Require(t)
	py := testutil.PythonPath
	testutil.Require(t, exec.Command(py, "-c", "import pika").Run() == nil, py+" with python3-pika")
	const queue = "test.envelope-headers.pika"
	amqptest.DeclareQueue(t, broker.URL(), bridgeExchange, queue)
	r := startRelay(t, broker)

	sent := []message{
		{topic: "org.fedoraproject.prod.e2e.headers", msgID: "2026-with-headers", msg: `{}`,
			headers: `{"x-origin": "koji", "n": 42, "f": 2.5, "ok": true, "none": null, "list": [1, "caf\u00e9"], "obj": {"k": "v"}, "sent-at": "forged", "priority": 9}`},
		{topic: "org.fedoraproject.prod.e2e.headers", msgID: "2026-empty-headers", msg: `{}`, headers: `{}`},
		{topic: "org.fedoraproject.prod.e2e.headers", msgID: "2026-no-headers", msg: `{}`},
	}
	if err := newConfirmedProducer(t, r.Confirm).send(sent, time.Now().Add(15*time.Second)); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", pikaReader, broker.URL(), queue,
		sent[0].msgID, sent[1].msgID, sent[2].msgID).Output()
	if err != nil {
		t.Fatalf("pika reader: %v; read:\n%s\nrelay:\n%s", err, out, r.Output())
	}
	got := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var m struct {
			ID      string         `json:"id"`
			Headers map[string]any `json:"headers"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("pika reader printed %q: %v", line, err)
		}
		got[m.ID] = m.Headers
	}
	for _, m := range sent {
		h := got[m.msgID]
		sentAt, _ := h["sent-at"].(string)
		if _, err := time.Parse("2006-01-02T15:04:05+00:00", sentAt); err != nil {
			t.Errorf("%s: sent-at %q is not the bridge's (%v)", m.msgID, sentAt, err)
		}
		delete(h, "sent-at")
		want := map[string]any{"fedora_messaging_schema": "base.message", "fedora_messaging_severity": float64(20), "priority": float64(0)}
		if m.msgID == "2026-with-headers" {
			want["x-origin"], want["n"], want["ok"], want["none"] = "koji", float64(42), true, nil
			want["f"] = map[string]any{"decimal": "2.5"}
			want["list"], want["obj"] = []any{float64(1), "café"}, map[string]any{"k": "v"}
		}
		if !reflect.DeepEqual(h, want) {
			t.Errorf("%s: headers (sent-at aside)\n%v\nwant\n%v", m.msgID, h, want)
		}
	}
}
