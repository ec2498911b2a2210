package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// The client speaks ZMTP 3.0 (RFC 23) with the NULL mechanism itself: a
// short-lived producer needs only to connect, finish the handshake and write
// frames, and doing that in Go keeps fedmsg-logger a static binary that
// starts in a fraction of the time a libzmq-linked one takes.

// maxFrame bounds what we accept from a relay in one frame and in one
// message (subscriptions, replies): a hostile endpoint cannot make us hold
// more than this per message, however many frames it flags MORE.
const maxFrame = 1 << 16

// maxOthers and maxOtherBytes bound the subscriptions remembered for the
// error of a relay that never subscribes to our topic.
const (
	maxOthers     = 8
	maxOtherBytes = 64
)

// zmtpConn is one ZMTP connection. Once the handshake is done, one
// goroutine reads while others write whole messages and commands under wmu.
type zmtpConn struct {
	net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
	w   *bufio.Writer
}

// handshake exchanges greetings and READY commands as socketType and
// checks the peer's socket type is one of peerTypes.
func handshake(c net.Conn, socketType string, peerTypes ...string) (*zmtpConn, error) {
	z := &zmtpConn{Conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	z.w.Write(zmtp.Greeting)
	z.writeFrame(zmtp.FlagCommand, zmtp.ReadyCommand(socketType))
	if err := z.w.Flush(); err != nil { // under the dial's deadline
		return nil, fmt.Errorf("send greeting: %w", err)
	}
	var peer [zmtp.GreetingSize]byte
	if _, err := io.ReadFull(z.r, peer[:]); err != nil {
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	if err := zmtp.CheckGreeting(peer[:]); err != nil {
		return nil, err
	}
	flags, body, err := z.readFrame()
	if err != nil {
		return nil, fmt.Errorf("read READY: %w", err)
	}
	if err := zmtp.CheckReady(flags, body, peerTypes...); err != nil {
		return nil, err
	}
	return z, nil
}

// writeFrame buffers one frame; Flush sends.
func (z *zmtpConn) writeFrame(flags byte, body []byte) { zmtp.WriteFrame(z.w, flags, body) }

// writeMessage sends a multi-frame message, giving up at deadline.
func (z *zmtpConn) writeMessage(deadline time.Time, frames ...[]byte) error {
	z.wmu.Lock()
	defer z.wmu.Unlock()
	for i, f := range frames {
		var flags byte
		if i < len(frames)-1 {
			flags = zmtp.FlagMore
		}
		z.writeFrame(flags, f)
	}
	return z.flush(deadline)
}

// writeCommand sends one command frame, giving up at deadline.
func (z *zmtpConn) writeCommand(deadline time.Time, body []byte) error {
	z.wmu.Lock()
	defer z.wmu.Unlock()
	z.writeFrame(zmtp.FlagCommand, body)
	return z.flush(deadline)
}

func (z *zmtpConn) flush(deadline time.Time) error {
	if err := z.Conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return z.w.Flush()
}

// readFrame reads one frame (message or command).
func (z *zmtpConn) readFrame() (byte, []byte, error) {
	flags, size, err := zmtp.ReadHeader(z.r)
	if err != nil {
		return 0, nil, err
	}
	if size > maxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes from peer", size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(z.r, body); err != nil {
		return 0, nil, err
	}
	return flags, body, nil
}

// message gathers the frames of one message, refusing to hold more than
// maxFrame bytes of it.
type message struct {
	frames [][]byte
	size   int
}

// add appends a frame and reports whether the message is complete.
func (m *message) add(flags byte, body []byte) (bool, error) {
	m.size += len(body)
	if m.size > maxFrame {
		return false, fmt.Errorf("message of more than %d bytes from peer", maxFrame)
	}
	m.frames = append(m.frames, body)
	return flags&zmtp.FlagMore == 0, nil
}

// waitSubscription reads until the peer subscribes to a prefix of topic.
// A ZMTP 3.0 subscriber sends subscriptions as messages: 0x01 + prefix.
// A 3.1 one may send a SUBSCRIBE command instead.
func (z *zmtpConn) waitSubscription(topic string) error {
	var others []string
	for {
		flags, body, err := z.readFrame()
		if err != nil && len(others) > 0 {
			return fmt.Errorf("the relay subscribes to %q, none a prefix of %q", others, topic)
		}
		if err != nil {
			return fmt.Errorf("wait for subscription: %w", err)
		}
		var prefix []byte
		switch {
		case flags&zmtp.FlagCommand != 0:
			name, data, err := zmtp.ParseCommand(body)
			if err != nil || name != "SUBSCRIBE" {
				continue
			}
			prefix = data
		case len(body) > 0 && body[0] == 1:
			prefix = body[1:]
		default:
			continue
		}
		if strings.HasPrefix(topic, string(prefix)) {
			return nil
		}
		if len(others) < maxOthers {
			others = append(others, string(prefix[:min(len(prefix), maxOtherBytes)]))
		}
	}
}

// dialAddress connects to a zmq endpoint: tcp://host:port or ipc://path.
func dialAddress(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	switch {
	case strings.HasPrefix(addr, "tcp://"):
		return d.DialContext(ctx, "tcp", strings.TrimPrefix(addr, "tcp://"))
	case strings.HasPrefix(addr, "ipc://"):
		return d.DialContext(ctx, "unix", strings.TrimPrefix(addr, "ipc://"))
	}
	return nil, errUnsupportedEndpoint
}

var errUnsupportedEndpoint = errors.New("unsupported endpoint (want tcp://HOST:PORT or ipc://PATH)")
