package inbound

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// FuzzReadMessage feeds arbitrary bytes after the handshake to the frame
// decoder, a producer's or a REQ confirming client's (whose messages start
// with an empty delimiter): it never panics, never stores more than
// max_message_bytes of a message, and gives back every byte of the budget
// at the end.
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{zmtp.FlagMore, 1, 't', 0, 2, '{', '}'}, false)
	f.Add([]byte{zmtp.FlagMore, 1, 't', zmtp.FlagMore, 1, 'b', 0, 1, 'x'}, false)
	f.Add([]byte{zmtp.FlagCommand, 7, 4, 'P', 'I', 'N', 'G', 0, 1}, false)
	f.Add([]byte{zmtp.FlagLong | zmtp.FlagMore, 0, 0, 0, 0, 0, 0, 0, 40}, false)
	f.Add([]byte{zmtp.FlagLong, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false)
	f.Add([]byte{zmtp.FlagMore, 1, 't', zmtp.FlagCommand, 1, 0}, false)
	f.Add([]byte{zmtp.FlagMore, 0, zmtp.FlagMore, 1, 't', 0, 2, '{', '}'}, true)
	f.Add([]byte{zmtp.FlagMore, 1, 't', 0, 2, '{', '}'}, true)
	const limit = 64
	f.Fuzz(func(t *testing.T, data []byte, req bool) {
		s, err := Listen(Options{MaxMessageBytes: limit, Budget: membudget.New(1 << 20), HandshakeTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		peer, ours := net.Pipe()
		defer peer.Close()
		go func() { peer.Write(data); peer.Close() }()
		go io.Copy(io.Discard, peer) // PONGs
		c := &conn{srv: s, nc: ours, r: bufio.NewReader(ours), w: bufio.NewWriter(ours)}
		c.Init(ours)
		if req {
			c.confirm = newConfirmConn()
			c.confirm.req = true
		}
		if err := s.budget.join(c, c.fixedCost()); err != nil {
			t.Fatal(err)
		}
		for c.readMessage() == nil {
		}
		c.flush()
		c.Close(ReasonPeerClosed)
		s.budget.leave(c)
		buf := make([]Message, 8)
		for n := s.Take(buf, 1<<20); n > 0; n = s.Take(buf, 1<<20) {
			for _, m := range buf[:n] {
				if len(m.Topic)+len(m.Body) > limit || m.Frames < 1 || len(m.Topic)+len(m.Body) > m.Size {
					t.Fatalf("message %q %q frames %d size %d", m.Topic, m.Body, m.Frames, m.Size)
				}
			}
			s.Release(buf[:n])
		}
		if held := s.opts.Budget.Used(); held != 0 {
			t.Fatalf("budget still holds %d bytes", held)
		}
	})
}
