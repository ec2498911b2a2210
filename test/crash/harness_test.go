// Package crash proves what the AMQP bridge's spool keeps across a host
// crash: the real relay binary spools onto crashfs (only what was fsynced
// survives), is SIGKILLed as the file system "loses power", and is started
// again on what is left, with a real RabbitMQ node to publish to. It is a
// module of its own so that go-fuse stays out of the relay's dependencies.
package crash

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/test/crash/crashfs"
)

// One broker for the package: booting RabbitMQ takes seconds.
func TestMain(m *testing.M) {
	os.Exit(amqptest.Main(m, amqptest.Options{}))
}

const bridgeExchange = "zmq.topic"

// host is a crash file system holding the relay's spool, and the relay's
// config on it.
type host struct {
	fs                                  *crashfs.FS
	spool                               string
	inbound, outbound, confirm, metrics string
	configDir                           string // a fedmsg config dir for fedmsg-logger (empty)
}

func newHost(t *testing.T) *host {
	t.Helper()
	err := crashfs.Available()
	testutil.Require(t, err == nil, fmt.Sprintf("FUSE (%v)", err))
	backing, mnt := t.TempDir(), t.TempDir()
	// The spool's directory exists (durably) before the relay first runs, as
	// the package's tmpfiles.d makes it.
	if err := os.Mkdir(filepath.Join(backing, "spool"), 0o750); err != nil {
		t.Fatal(err)
	}
	c, err := crashfs.Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return &host{
		fs:        c,
		spool:     filepath.Join(mnt, "spool"),
		inbound:   fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)),
		outbound:  fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)),
		confirm:   fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)),
		metrics:   fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		configDir: t.TempDir(),
	}
}

// startRelay runs the relay binary with the bridge publishing to url and its
// spool on the crash file system, and returns once it relays. The spool's
// 128 KiB segments (1/16 of spool_max_bytes) rotate a few times a second
// under the test's traffic, without filling the spool.
func (h *host) startRelay(t *testing.T, url, sync string) *testutil.Process {
	t.Helper()
	config := testutil.WriteFile(t, "relay.yaml", fmt.Sprintf(`relay_inbound: %s
relay_outbound: %s
relay_inbound_confirm: %s
metrics_address: %s
inbound_hwm: 100000
outbound_hwm: 100000
amqp:
  url: %s
  exchange: %s
  spool_dir: %s
  spool_max_bytes: 2097152
  spool_sync: %s
  reconnect_min: 50ms
  reconnect_max: 200ms
`, h.inbound, h.outbound, h.confirm, h.metrics, url, bridgeExchange, h.spool, sync))
	relay := testutil.Start(t, testutil.Binary(t, "fedmsg-relay"), "--config", config)
	relay.WaitOutput(t, "relaying", 10*time.Second)
	return relay
}

// unreachableURL is a broker URL nothing listens on: the bridge keeps every
// message in its spool.
func unreachableURL(t *testing.T) string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", testutil.FreePort(t))
}

// confirmed is a message fedmsg-logger --confirm reported the relay answered
// "ok" for, and when it learnt so.
type confirmed struct {
	id string
	at time.Time
}

// producers send until stopped: loggers run fedmsg-logger --confirm once per
// message (its exit status is the relay's answer), and one python3-zmq PUB
// socket sends unconfirmed messages at a steady rate.
type producers struct {
	stop chan struct{}
	wg   sync.WaitGroup
	pub  *exec.Cmd

	mu   sync.Mutex
	oks  []confirmed
	fail int // fedmsg-logger runs that did not end in "ok"
}

const pubScript = `
import json, sys, time, zmq
sock = zmq.Context().socket(zmq.PUB)
sock.setsockopt(zmq.SNDHWM, 0)
sock.connect(sys.argv[1])
time.sleep(0.2)
i = 0
while True:
    for _ in range(10):
        i += 1
        msg = {"n": "p-%d" % i, "pad": "x" * 200}
        body = {"topic": "org.fedoraproject.test.crash.pub", "msg": msg, "msg_id": "p-%d" % i,
                "i": i, "timestamp": int(time.time()), "username": "crash"}
        sock.send_multipart([b"org.fedoraproject.test.crash.pub", json.dumps(body).encode()])
    time.sleep(0.005)
`

func (h *host) startProducers(t *testing.T, loggers int) *producers {
	t.Helper()
	logger := testutil.Binary(t, "fedmsg-logger")
	p := &producers{stop: make(chan struct{})}
	p.pub = exec.Command(testutil.Python(t), "-c", pubScript, h.inbound)
	if err := p.pub.Start(); err != nil {
		t.Fatalf("start PUB producer: %v", err)
	}
	for g := range loggers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				default:
				}
				id := fmt.Sprintf("c%d-%d", g, i)
				err := h.logger(logger, id, time.Second).Run()
				p.mu.Lock()
				if err == nil {
					p.oks = append(p.oks, confirmed{id, time.Now()})
				} else {
					p.fail++
				}
				p.mu.Unlock()
			}
		}()
	}
	t.Cleanup(p.halt)
	return p
}

// logger is one fedmsg-logger --confirm run sending {"n": id}: it exits 0
// only if the relay answered "ok".
func (h *host) logger(exe, id string, timeout time.Duration) *exec.Cmd {
	return exec.Command(exe, "--confirm", "--json-input", "--message", `{"n":"`+id+`"}`,
		"--relay-confirm", h.confirm, "--timeout", timeout.String(), "--config-dir", h.configDir)
}

// halt stops every producer (idempotent).
func (p *producers) halt() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	_ = p.pub.Process.Kill()
	_ = p.pub.Wait()
	p.wg.Wait()
}

func (p *producers) acknowledged() []confirmed {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]confirmed(nil), p.oks...)
}

// crashHost kills the relay and crashes the file system under it, at once:
// the caller froze the file system (nothing more becomes durable) at the
// crash point. SIGKILL first, so the relay runs no more code once its writes
// and fsyncs blocked on the dead file system are released.
func crashHost(t *testing.T, h *host, relay *testutil.Process, mode crashfs.Mode, seed uint64) {
	t.Helper()
	if err := relay.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL the relay: %v", err)
	}
	h.fs.Release()
	_ = relay.Cmd.Wait()
	if err := h.fs.Crash(mode, newRand(seed)); err != nil {
		t.Fatal(err)
	}
}

var idPattern = regexp.MustCompile(`"n": ?"([^"]+)"`)

// delivered returns how often each message id reached the queue.
func delivered(t *testing.T, c *amqptest.Collector) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, d := range c.Snapshot() {
		m := idPattern.FindSubmatch(d.Body)
		if m == nil {
			t.Errorf("RabbitMQ got a message that no producer sent: %q", d.Body)
			continue
		}
		got[string(m[1])]++
	}
	return got
}

// drain waits until the relay's spool is empty and the collector has had
// nothing new for a moment.
func drain(t *testing.T, metrics string, c *amqptest.Collector) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "the spool to drain into RabbitMQ", func() bool {
		return testutil.Metric(t, metrics, "fedmsg_relay_amqp_spool_messages") == 0
	})
	last := -1
	testutil.WaitFor(t, 10*time.Second, "the queue's consumer to catch up", func() bool {
		n := len(c.Snapshot())
		settled := n == last
		last = n
		time.Sleep(200 * time.Millisecond)
		return settled
	})
}

// bridgeQueue declares the exchange and a queue of the test's own on it, and
// consumes it until the test ends.
func bridgeQueue(t *testing.T, broker *amqptest.Broker) *amqptest.Collector {
	t.Helper()
	queue := "crash." + strings.ReplaceAll(t.Name(), "/", ".")
	amqptest.DeclareQueue(t, broker.URL(), bridgeExchange, queue)
	return amqptest.StartCollector(t, broker.URL(), queue)
}
