package client

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// peerBytes is what a libzmq SUB sends: greeting, READY, a subscription.
func peerBytes() []byte {
	var b bytes.Buffer
	z := &zmtpConn{w: bufio.NewWriter(&b)}
	z.w.Write(zmtp.Greeting)
	z.writeFrame(zmtp.FlagCommand, zmtp.ReadyCommand("SUB"))
	z.writeFrame(0, []byte("\x01org.fedoraproject."))
	z.writeFrame(zmtp.FlagMore, bytes.Repeat([]byte("t"), 300)) // long frame
	z.writeFrame(0, []byte("body"))
	z.w.Flush()
	return b.Bytes()
}

func TestHandshakeAndSubscription(t *testing.T) {
	ours, theirs := net.Pipe()
	defer ours.Close()
	// net.Pipe is unbuffered: the peer reads and writes at the same time.
	go func() { _, _ = io.Copy(io.Discard, theirs) }()
	go func() { _, _ = theirs.Write(peerBytes()) }()
	z, err := handshake(ours, "PUB", "SUB")
	if err != nil {
		t.Fatal(err)
	}
	if err := z.waitSubscription("org.fedoraproject.dev.logger.log"); err != nil {
		t.Fatal(err)
	}
	s := start(z, defaultHeartbeat, true)
	defer s.close()
	select {
	case reply := <-s.replies: // after a 300-byte frame flagged MORE
		if string(reply) != "body" {
			t.Fatalf("reply %q, want body", reply)
		}
	case <-s.done:
		t.Fatalf("session ended: %v", s.err)
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
	}
}

func TestReadyProperty(t *testing.T) {
	props := zmtp.ReadyCommand("ROUTER")[len("\x05READY"):]
	cases := []struct {
		props []byte
		name  string
		want  string
	}{
		{props, "Socket-Type", "ROUTER"},
		{props, "socket-type", "ROUTER"},
		{props, "Identity", ""},
		{props[:len(props)-2], "Socket-Type", ""}, // truncated value
		{nil, "Socket-Type", ""},
	}
	for _, tc := range cases {
		if got := zmtp.ReadyProperty(tc.props, tc.name); got != tc.want {
			t.Errorf("zmtp.ReadyProperty(%q, %q) = %q, want %q", tc.props, tc.name, got, tc.want)
		}
	}
}

// FuzzPeerStream feeds hostile peer bytes to the frame reader and the
// command parsers: they must fail cleanly, never panic or over-allocate.
func FuzzPeerStream(f *testing.F) {
	real := peerBytes()
	f.Add(real)
	f.Add(real[:70])
	f.Add(real[64:])
	f.Add([]byte{zmtp.FlagLong, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{zmtp.FlagCommand, 5, 4, 'P', 'I', 'N', 'G'}) // no TTL
	f.Add(append([]byte{zmtp.FlagCommand, 40, 4, 'P', 'I', 'N', 'G', 0, 1}, bytes.Repeat([]byte("c"), 33)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		z := &zmtpConn{r: bufio.NewReader(bytes.NewReader(data))}
		for i := 0; i < 100; i++ {
			flags, body, err := z.readFrame()
			if err != nil {
				return
			}
			if len(body) > maxFrame {
				t.Fatalf("accepted a %d-byte frame", len(body))
			}
			if flags&zmtp.FlagCommand != 0 {
				if name, data, err := zmtp.ParseCommand(body); err == nil {
					zmtp.ReadyProperty(data, "Socket-Type")
					if pong := zmtp.PongCommand(data); name == "PING" && len(pong) > len("\x04PONG")+zmtp.MaxPingContext {
						t.Fatalf("a %d-byte PONG", len(pong))
					}
				}
			}
		}
	})
}
