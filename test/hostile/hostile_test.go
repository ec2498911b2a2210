// Package hostile attacks a running fedmsg-relay (the Go engines, default
// budget) from every side at once and checks that its memory stays
// bounded while a well-behaved producer and listener lose nothing.
package hostile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/client"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// rssBound is the growth over the idle figure the relay must stay under
// with the default buffer_bytes (16 MiB).
const rssBound = 64 << 20

func rss(t *testing.T, pid int) int64 {
	kib, err := testutil.RSSKiB(pid)
	if err != nil {
		t.Error(err) // from the sampling goroutine: no Fatal
	}
	return int64(kib) << 10
}

// peer dials ep and does a ZMTP handshake as socketType (never reading the
// relay's side: the kernel buffers it).
func peer(ep, socketType string, extra ...[]byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(ep, "tcp://"), 5*time.Second)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(zmtp.Greeting)
	ready := zmtp.ReadyCommand(socketType)
	b.Write([]byte{zmtp.FlagCommand, byte(len(ready))})
	b.Write(ready)
	for _, e := range extra {
		b.Write(e)
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b.Bytes()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func longFrame(flags byte, n int) []byte {
	return append([]byte{flags | zmtp.FlagLong}, binary.BigEndian.AppendUint64(nil, uint64(n))...)
}

// Endless multipart from raw TCP peers, many connections each holding an
// unfinished message at its share (producers and confirming clients both),
// a flood of handshakes and a subscriber that never reads, all at once: the
// relay's RSS grows by less than 64 MiB over its idle figure, a confirming
// client is answered, and a pyzmq producer's messages all reach a pyzmq
// listener.
func TestHostilePeersBoundedMemory(t *testing.T) {
	testutil.Python(t) // the producer and listener are pyzmq
	in := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	out := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	confirm := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := testutil.WriteFile(t, "relay.yaml", fmt.Sprintf(`
relay_inbound: %s
relay_outbound: %s
relay_inbound_confirm: %s
metrics_address: %s
inbound_engine: go
outbound_engine: go
handshake_timeout: 2s
log_level: warn
`, in, out, confirm, metricsAddr))
	relay := testutil.Start(t, testutil.Binary(t, "fedmsg-relay"), "--config", cfg)
	pid := relay.Cmd.Process.Pid
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", strings.TrimPrefix(out, "tcp://")); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("relay does not listen")
		}
	}
	time.Sleep(500 * time.Millisecond) // settle the start-up allocations
	idle := rss(t, pid)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var open sync.Map // the attackers' connections, closed at the end
	track := func(c net.Conn) net.Conn {
		open.Store(c, nil)
		select {
		case <-stop: // the end came while it connected
			c.Close()
		default:
		}
		return c
	}
	attack := func(n int, f func()) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					f()
				}
			}()
		}
	}
	var cutOff, stalled atomic.Int64
	frame := append(longFrame(zmtp.FlagMore, 60<<10), bytes.Repeat([]byte("m"), 60<<10)...)
	endless := func(ep, socketType string) func() { // cut off at max_message_bytes
		return func() {
			c, err := peer(ep, socketType)
			if err != nil {
				return
			}
			defer track(c).Close()
			for {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(frame); err != nil {
					cutOff.Add(1)
					return
				}
			}
		}
	}
	unfinished := func(ep, socketType string) func() { // an unfinished 1 MiB message, then silence
		return func() {
			c, err := peer(ep, socketType, []byte{zmtp.FlagMore, 1, 't'}, longFrame(0, 1000<<10))
			if err != nil {
				return
			}
			defer track(c).Close()
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write(bytes.Repeat([]byte("s"), 900<<10))
			stalled.Add(1)
			for { // until evicted, timed out or the test ends
				if _, err := c.Read(make([]byte, 1<<16)); err != nil {
					return
				}
			}
		}
	}
	attack(20, endless(in, "PUB"))
	attack(10, endless(confirm, "DEALER"))
	attack(60, unfinished(in, "PUB"))
	attack(20, unfinished(confirm, "DEALER"))
	attack(4, func() { // handshake flood: garbage, silence, half a greeting
		c, err := net.Dial("tcp", strings.TrimPrefix(in, "tcp://"))
		if err != nil {
			return
		}
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		c.Close()
	})
	sub, err := peer(out, "SUB", []byte{0, 1, 1}) // subscribes to everything, never reads
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	stopSampling := testutil.SamplePeak(20*time.Millisecond, func() int64 { return rss(t, pid) })
	time.Sleep(2 * time.Second) // let the attack reach its steady state

	// fedmsg-logger --confirm's client is answered meanwhile (before the
	// listener joins: it expects only the producer's messages).
	confirmer, err := client.DialConfirmer([]string{confirm}, 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		topic := "org.fedoraproject.test.hostile.confirm"
		if err := confirmer.Send(topic, []byte(fmt.Sprintf(`{"topic": %q, "msg": {"i": %d}}`, topic, i))); err != nil {
			t.Fatalf("confirmed message %d: %v", i, err)
		}
	}
	confirmer.Close()

	const n = 2000
	msgs := make([][][]byte, n)
	for i := range msgs {
		topic := "org.fedoraproject.test.hostile"
		msgs[i] = [][]byte{[]byte(topic), []byte(fmt.Sprintf(`{"topic": %q, "msg": {"i": %d}}`, topic, i))}
	}
	got := testutil.RunScenario(t, testutil.Scenario{
		Inbound: in, Outbound: out, Subscribers: 1, Producers: [][][][]byte{msgs}, Idle: 20, Expect: n,
	})[0]
	close(stop)
	open.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
	wg.Wait()
	peak := stopSampling()
	// Why a message was lost, as the relay counts it: a budget drop means
	// strangers' unfinished messages kept room from accepted ones.
	var drops []string
	for _, reason := range []string{"hwm", "share", "budget", "disconnected"} {
		drops = append(drops, fmt.Sprintf("%s=%v", reason,
			testutil.Metric(t, metricsAddr, fmt.Sprintf(`fedmsg_relay_outbound_dropped_total{reason=%q}`, reason))))
	}
	overShare := testutil.Metric(t, metricsAddr, `fedmsg_relay_disconnects_total{reason="over_share"}`)
	if len(got) != n {
		// Only the producer completes messages on relay_inbound: fewer
		// received than it sent means it was cut off before the relay had them.
		t.Errorf("listener got %d of %d messages; relay received %v on relay_inbound, relayed %v (with the %d confirmed); outbound drops %s",
			len(got), n, testutil.Metric(t, metricsAddr, `fedmsg_relay_received_total{source="inbound"}`),
			testutil.Metric(t, metricsAddr, "fedmsg_relay_relayed_total"), 50, strings.Join(drops, " "))
	}
	for i, m := range got {
		if !bytes.Equal(m[1], msgs[i][1]) {
			t.Fatalf("message %d = %q, want %q", i, m[1], msgs[i][1])
		}
	}
	t.Logf("RSS idle %.1f MiB, peak %.1f MiB (+%.1f MiB); %d endless senders cut off, %d stalled messages started, %v evicted over share; outbound drops %s",
		float64(idle)/(1<<20), float64(peak)/(1<<20), float64(peak-idle)/(1<<20), cutOff.Load(), stalled.Load(), overShare, strings.Join(drops, " "))
	if peak-idle > rssBound {
		t.Errorf("RSS grew by %.1f MiB, bound %d MiB", float64(peak-idle)/(1<<20), rssBound>>20)
	}
	if cutOff.Load() == 0 {
		t.Error("no endless sender was cut off")
	}
}
