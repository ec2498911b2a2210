package relay

import (
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// Producers stalled in the middle of a message, each within its share,
// keep the byte budget full: the relay still delivers every accepted
// message, taking room back from them (they are disconnected and counted
// as over_share) instead of dropping the message for want of budget.
func TestAcceptedMessagesReclaimRoomFromStalledPeers(t *testing.T) {
	opts := testOptions(t)
	opts.InboundEngine, opts.OutboundEngine = transport.EngineGo, transport.EngineGo
	opts.BufferBytes, opts.MaxMessageBytes, opts.MaxInboundConnections = 2<<20, 64<<10, 100
	budget := membudget.New(opts.BufferBytes)
	opts.Budget = budget
	tr := runRelay(t, opts, hclog.NewNullLogger(), nil)
	fast, pub := fastSubscriber(t, tr)

	// Each stalled peer announces a 60 KiB body and sends none of it, again
	// as soon as it is disconnected: 40 of them hold more than the budget.
	stalledMsg := append([]byte(nil), zmtp.Greeting...)
	stalledMsg = zmtp.AppendFrame(stalledMsg, zmtp.FlagCommand, zmtp.ReadyCommand("PUB"))
	stalledMsg = zmtp.AppendFrame(stalledMsg, zmtp.FlagMore, []byte(testTopic))
	stalledMsg = binary.BigEndian.AppendUint64(append(stalledMsg, zmtp.FlagLong), 60<<10)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := net.Dial("tcp", tcpAddr(tr.inbound))
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				nc.Write(stalledMsg)
				go func() { <-stop; nc.Close() }()
				nc.Read(make([]byte, 1<<10)) // until the relay lets it go
				nc.Close()
			}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); budget.Free() > 64<<10; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled peers did not fill the budget: %d of %d free", budget.Free(), budget.Limit())
		}
	}

	pad := `, "pad": "` + strings.Repeat("z", 900) + `"`
	const bursts, burst = 50, 20 // a burst stays within the subscriber's share
	for b := range bursts {
		for i := range burst {
			_, err := pub.SendMessage(testTopic, fedmsgBody(testTopic, b*burst+i, pad))
			must(t, err)
		}
		for i := range burst {
			m, err := fast.RecvMessageBytes(0)
			if err != nil {
				t.Fatalf("message %d lost (relay received %s, outbound drops for budget %s): %v", b*burst+i,
					tr.metric(t, `fedmsg_relay_received_total{source="inbound"}`),
					tr.metric(t, `fedmsg_relay_outbound_dropped_total{reason="budget"}`), err)
			}
			if want := fedmsgBody(testTopic, b*burst+i, pad); string(m[1]) != string(want) {
				t.Fatalf("message %d = %.80q, want %.80q", b*burst+i, m[1], want)
			}
		}
	}
	for _, reason := range []string{"hwm", "share", "budget", "disconnected"} {
		if n := tr.metric(t, `fedmsg_relay_outbound_dropped_total{reason="`+reason+`"}`); n != "0" {
			t.Errorf("%s messages dropped for %s", n, reason)
		}
	}
	evicted, _ := strconv.Atoi(tr.metric(t, `fedmsg_relay_disconnects_total{reason="over_share"}`))
	if evicted == 0 {
		t.Error("no stalled peer was disconnected over its share")
	}
	t.Logf("%d messages delivered, %d stalled peers disconnected over their share", bursts*burst, evicted)
}
