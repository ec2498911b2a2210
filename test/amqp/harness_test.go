// Package amqp holds end-to-end tests of the relay's RabbitMQ bridge: the
// real fedmsg-relay binary between libzmq peers (pyzmq and pebbe/zmq4) and a
// real RabbitMQ node (Debian's rabbitmq-server, run by amqptest).
package amqp

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// One broker for the package: booting RabbitMQ takes seconds.
func TestMain(m *testing.M) {
	os.Exit(amqptest.Main(m, amqptest.Options{}))
}

// bridgeExchange is Fedora's bridge exchange. The tests declare it, as the
// operator does on Fedora's broker; the relay never declares it.
const bridgeExchange = "zmq.topic"

// relay is a running relay binary on free loopback ports with the bridge on.
type relay struct {
	*testutil.Process
	testutil.RelayEndpoints
	exe, config string
}

// startRelay runs the relay with an amqp section pointing at the broker, a
// spool in a fresh directory, and the extra YAML lines of the amqp section
// (each indented by two spaces), and returns once it relays.
func startRelay(t testing.TB, broker *amqptest.Broker, amqpExtra ...string) *relay {
	t.Helper()
	return startRelayWith(t, broker, nil, amqpExtra...)
}

// startRelayWith is startRelay with top-level YAML lines of its own.
func startRelayWith(t testing.TB, broker *amqptest.Broker, top []string, amqpExtra ...string) *relay {
	t.Helper()
	r := &relay{RelayEndpoints: testutil.FreeRelayEndpoints(t), exe: testutil.Binary(t, "fedmsg-relay")}
	r.config = testutil.WriteFile(t, "relay.yaml", fmt.Sprintf(`%sinbound_hwm: 100000
outbound_hwm: 100000
%s
amqp:
  url: %s
  exchange: %s
  spool_dir: %s
  reconnect_min: 50ms
  reconnect_max: 500ms
%s
`, r.Config(), strings.Join(top, "\n"), broker.URL(), bridgeExchange, t.TempDir(), strings.Join(amqpExtra, "\n")))
	r.start(t)
	return r
}

func (r *relay) start(t testing.TB) {
	t.Helper()
	r.Process = testutil.Start(t, r.exe, "--config", r.config)
	r.WaitOutput(t, "relaying", 10*time.Second)
}

// restart stops the relay with SIGTERM (it drains and flushes its spool),
// checks it exited 0, and starts it again with the same config and spool.
func (r *relay) restart(t testing.TB) {
	t.Helper()
	if err := r.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM the relay: %v", err)
	}
	if err := r.Cmd.Wait(); err != nil {
		t.Fatalf("relay after SIGTERM: %v\n%s", err, r.Output())
	}
	r.start(t)
}

// kill kills the relay with SIGKILL, as the OOM killer or a crash would,
// and starts it again with the same config and spool.
func (r *relay) kill(t testing.TB) {
	t.Helper()
	if err := r.Cmd.Process.Kill(); err != nil {
		t.Fatalf("SIGKILL the relay: %v", err)
	}
	_ = r.Cmd.Wait() // "signal: killed"
	r.start(t)
}

// metric returns the value of series in the relay's /metrics.
func (r *relay) metric(t testing.TB, series string) float64 {
	t.Helper()
	return testutil.Metric(t, r.Metrics, series)
}

// bridgeQueue declares the bridge exchange and a queue of the test's own
// bound to it with "#", and consumes it until the test ends, when the queue
// is deleted (the exchange stays, as on a real broker).
func bridgeQueue(t testing.TB, broker *amqptest.Broker) *amqptest.Collector {
	t.Helper()
	queue := "test." + strings.ReplaceAll(t.Name(), "/", ".")
	amqptest.DeclareQueue(t, broker.URL(), bridgeExchange, queue)
	deleteAtEnd(t, broker.URL(), queue)
	return amqptest.StartCollector(t, broker.URL(), queue)
}

// consumedQueue declares queue, durable and empty, bound to topic on
// amq.topic, for the relay to consume from; it is deleted when the test
// ends.
func consumedQueue(t testing.TB, broker *amqptest.Broker, queue, topic string) {
	t.Helper()
	amqptest.WithChannel(t, broker.URL(), func(ch *amqp091.Channel) error {
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			return err
		}
		if err := ch.QueueBind(queue, topic, "amq.topic", false, nil); err != nil {
			return err
		}
		_, err := ch.QueuePurge(queue, false)
		return err
	})
	deleteAtEnd(t, broker.URL(), queue)
}

// deleteAtEnd deletes queue when the test ends.
func deleteAtEnd(t testing.TB, url, queue string) {
	t.Cleanup(func() {
		amqptest.WithChannel(t, url, func(ch *amqp091.Channel) error {
			_, err := ch.QueueDelete(queue, false, false, false)
			return err
		})
	})
}

// message is one fedmsg message as a producer sends it.
type message struct {
	topic, msgID, msg string // msg is the JSON of the envelope's "msg"
	headers           string // the JSON of the envelope's "headers"; "" for none
}

func (m message) frames() [][]byte {
	headers := ""
	if m.headers != "" {
		headers = `, "headers": ` + m.headers
	}
	body := fmt.Sprintf(`{"topic": %q, "msg": %s, "msg_id": %q, "i": 1, "timestamp": 1700000000, "username": "e2e"%s}`, m.topic, m.msg, m.msgID, headers)
	return [][]byte{[]byte(m.topic), []byte(body)}
}

// confirmedProducer sends through relay_inbound_confirm with a DEALER socket
// (pebbe/zmq4, libzmq) in windows: it sends a window, then waits for one
// "ok" per message. A window without all its answers in time (the relay was
// restarting) is sent again on a fresh socket: at least once, like a
// careful client.
type confirmedProducer struct {
	endpoint string
	timeout  time.Duration
	sock     *zmq.Socket
	resent   int           // windows sent again
	slowest  time.Duration // longest wait for a window's answers that all came
}

func newConfirmedProducer(t testing.TB, endpoint string) *confirmedProducer {
	t.Helper()
	p := &confirmedProducer{endpoint: endpoint, timeout: 3 * time.Second}
	if err := p.connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.sock.Close() })
	return p
}

func (p *confirmedProducer) connect() error {
	if p.sock != nil {
		p.sock.Close()
	}
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return fmt.Errorf("dealer socket: %w", err)
	}
	p.sock = sock
	for _, set := range []error{sock.SetLinger(0), sock.SetSndhwm(0), sock.SetRcvhwm(0), sock.SetRcvtimeo(p.timeout)} {
		if set != nil {
			return fmt.Errorf("dealer option: %w", set)
		}
	}
	if err := sock.Connect(p.endpoint); err != nil {
		return fmt.Errorf("connect %s: %w", p.endpoint, err)
	}
	return nil
}

// send delivers one window, sending it again until every message is acknowledged.
func (p *confirmedProducer) send(window []message, deadline time.Time) error {
	for {
		err := p.trySend(window)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("window of %d from %s: %w", len(window), window[0].msgID, err)
		}
		p.resent++
		if err := p.connect(); err != nil {
			return err
		}
	}
}

var errNoAnswer = errors.New("no answer in time")

func (p *confirmedProducer) trySend(window []message) error {
	start := time.Now()
	for _, m := range window {
		if _, err := p.sock.SendMessage(m.frames()); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	for range window {
		reply, err := p.sock.Recv(0)
		if err != nil {
			return errNoAnswer
		}
		if reply != "ok" {
			return fmt.Errorf("relay answered %q", reply)
		}
	}
	p.slowest = max(p.slowest, time.Since(start))
	return nil
}

// subscriber is a SUB socket (pebbe/zmq4) on the relay's outbound.
type subscriber struct{ sock *zmq.Socket }

func subscribe(t testing.TB, endpoint string) *subscriber {
	t.Helper()
	sock, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	if err := sock.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := sock.SetSubscribe(""); err != nil {
		t.Fatal(err)
	}
	if err := sock.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	return &subscriber{sock}
}

// next returns the next message's frames, or nil after timeout.
func (s *subscriber) next(t testing.TB, timeout time.Duration) []string {
	t.Helper()
	if err := s.sock.SetRcvtimeo(timeout); err != nil {
		t.Fatal(err)
	}
	frames, err := s.sock.RecvMessage(0)
	if err != nil {
		return nil
	}
	return frames
}
