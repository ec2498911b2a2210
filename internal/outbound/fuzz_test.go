package outbound

import (
	"bufio"
	"net"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// FuzzReadLoop feeds arbitrary bytes after the handshake to a subscriber's
// reader: it never panics, holds no more subscriptions than allowed, and
// gives every byte of the budget back at the end.
func FuzzReadLoop(f *testing.F) {
	f.Add([]byte{0, 1, 1})                                                            // SUB to "" (ZMTP 3.0)
	f.Add([]byte{0, 6, 1, 'o', 'r', 'g', '.', 'a', 0, 6, 0, 'o', 'r', 'g', '.', 'a'}) // subscribe, cancel
	f.Add(zmtp.AppendFrame(nil, zmtp.FlagCommand, []byte("\x09SUBSCRIBEorg.x")))
	f.Add(zmtp.AppendFrame(nil, zmtp.FlagCommand, []byte("\x06CANCELorg.x")))
	f.Add(zmtp.AppendFrame(nil, zmtp.FlagCommand, []byte("\x04PING\x00\x0aabc")))
	f.Add([]byte{zmtp.FlagMore, 1, 1, 0, 1, 'x'}) // multipart from an XSUB: not a subscription
	f.Add([]byte{zmtp.FlagLong, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{zmtp.FlagCommand, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Server{opts: Options{HWM: 10}, budget: membudget.New(1 << 20), subsChanged: make(chan struct{})}
		peer, ours := net.Pipe()
		defer peer.Close()
		go func() { peer.Write(data); peer.Close() }()
		c := &subscriber{srv: s, nc: ours, r: bufio.NewReader(ours), prefixes: map[string]int{},
			wake: make(chan struct{}, 1), writerDone: make(chan struct{})}
		c.Init(ours)
		if err := c.readLoop(); err == nil {
			t.Fatal("readLoop ended without an error")
		}
		if c.held.Load() > maxPrefixes || c.charged > maxPrefixBytes {
			t.Fatalf("%d subscriptions, %d bytes of them", c.held.Load(), c.charged)
		}
		if int64(s.subscriptions.Load()) != c.held.Load() {
			t.Fatalf("server counts %d subscriptions, the subscriber holds %d", s.subscriptions.Load(), c.held.Load())
		}
		c.Close(ReasonPeerClosed)
		s.budget.Release(c.charged)
		if used := s.budget.Used(); used != 0 {
			t.Fatalf("budget still holds %d bytes", used)
		}
	})
}
