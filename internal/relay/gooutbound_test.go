package relay

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// The Go outbound engine through the whole relay: a subscriber that never
// reads is cut off as stalled, counted, and logged with its address, while
// a reading libzmq subscriber gets every message; the per-subscriber series
// show the reader's and lose the stalled one's when it goes.
func TestGoOutboundCutsOffStalledSubscriber(t *testing.T) {
	opts := testOptions(t)
	opts.OutboundEngine = transport.EngineGo
	opts.HeartbeatInterval = 200 * time.Millisecond // stalled after 600 ms without progress
	// The stalled subscriber may hold half of 2 MiB; the reader's burst, and
	// the next one while its writer is still releasing it, fit in the rest.
	opts.BufferBytes, opts.MaxMessageBytes = 2<<20, 64<<10
	var logBuf testutil.SyncBuffer
	tr := runRelay(t, opts, hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Info}), nil)

	// The stalled subscriber: raw ZMTP, a tiny receive buffer, never reads.
	d := net.Dialer{}
	nc, err := d.Dial("tcp", strings.TrimPrefix(tr.outbound, "tcp://"))
	must(t, err)
	defer nc.Close()
	must(t, nc.(*net.TCPConn).SetReadBuffer(4<<10))
	hello := append(append([]byte(nil), zmtp.Greeting...), zmtp.AppendFrame(nil, zmtp.FlagCommand, zmtp.ReadyCommand("SUB"))...)
	_, err = nc.Write(zmtp.AppendFrame(hello, 0, []byte{zmtp.SubscribeByte}))
	must(t, err)
	stalledPeer := nc.LocalAddr().String()

	fast, pub := fastSubscriber(t, tr)
	pad := `, "pad": "` + strings.Repeat("z", 900) + `"`
	stalledOff := func() bool { return tr.metric(t, `fedmsg_relay_disconnects_total{reason="stalled_subscriber"}`) != "0" }
	sent := 0
	for deadline := time.Now().Add(20 * time.Second); !stalledOff(); {
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber that never reads was not cut off as stalled after %d messages", sent)
		}
		for range 200 { // a burst the reader takes before the next
			_, err := pub.SendMessage(testTopic, fedmsgBody(testTopic, sent, pad))
			must(t, err)
			sent++
		}
		for got := 0; got < 200; got++ {
			if _, err := fast.RecvMessageBytes(0); err != nil {
				var b bytes.Buffer
				tr.reg.WriteText(&b)
				t.Fatalf("the reading subscriber lost messages while another stalled (%d sent): %v\n%s", sent, err, b.String())
			}
		}
	}
	var dropped int
	for _, reason := range []string{"hwm", "share", "budget", "disconnected"} {
		n, _ := strconv.Atoi(tr.metric(t, `fedmsg_relay_outbound_dropped_total{reason="`+reason+`"}`))
		dropped += n
	}
	if dropped == 0 {
		t.Error("the stalled subscriber lost nothing: fedmsg_relay_outbound_dropped_total is 0")
	}
	var b bytes.Buffer
	must(t, tr.reg.WriteText(&b))
	metrics := b.String()
	if strings.Contains(metrics, stalledPeer) {
		t.Errorf("the stalled subscriber's series outlived it:\n%s", metrics)
	}
	if !strings.Contains(metrics, "fedmsg_relay_subscriber_dropped_total{peer=") ||
		!strings.Contains(metrics, "fedmsg_relay_subscriber_sent_total{peer=") {
		t.Errorf("no per-subscriber series for the reading subscriber:\n%s", metrics)
	}
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "fedmsg_relay_subscriber_dropped_total{") && !strings.HasSuffix(line, " 0") {
			t.Errorf("the reading subscriber lost messages: %s", line)
		}
	}
	if log := logBuf.String(); !strings.Contains(log, "subscriber disconnected: reason=stalled_subscriber peer="+stalledPeer) {
		t.Errorf("no log line naming the stalled subscriber %s:\n%s", stalledPeer, log)
	}
}
