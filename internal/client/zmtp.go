package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// The client speaks ZMTP 3.0 (RFC 23) with the NULL mechanism itself: a
// short-lived producer needs only to connect, finish the handshake and write
// frames, and doing that in Go keeps fedmsg-logger a static binary that
// starts in a fraction of the time a libzmq-linked one takes.

// Frame flags.
const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

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

// greeting is ours: signature, version 3.0, mechanism NULL, as-server 0.
var greeting = func() []byte {
	g := make([]byte, 64)
	g[0], g[9], g[10], g[11] = 0xff, 0x7f, 3, 0
	copy(g[12:32], "NULL")
	return g
}()

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
	z.w.Write(greeting)
	z.writeFrame(flagCommand, readyCommand(socketType))
	if err := z.w.Flush(); err != nil { // under the dial's deadline
		return nil, fmt.Errorf("send greeting: %w", err)
	}
	var peer [64]byte
	if _, err := io.ReadFull(z.r, peer[:]); err != nil {
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	if peer[0] != 0xff || peer[9] != 0x7f || peer[10] < 3 {
		return nil, errors.New("peer does not speak ZMTP 3")
	}
	if mech := string(bytes.TrimRight(peer[12:32], "\x00")); mech != "NULL" {
		return nil, fmt.Errorf("peer wants security mechanism %s", mech)
	}
	flags, body, err := z.readFrame()
	if err != nil {
		return nil, fmt.Errorf("read READY: %w", err)
	}
	name, props, err := parseCommand(body)
	if err != nil || flags&flagCommand == 0 {
		return nil, fmt.Errorf("bad READY from peer: %v", err)
	}
	if name == "ERROR" {
		return nil, fmt.Errorf("peer refused the handshake: %q", props)
	}
	if name != "READY" {
		return nil, fmt.Errorf("peer sent %s instead of READY", name)
	}
	got := readyProperty(props, "Socket-Type")
	for _, t := range peerTypes {
		if got == t {
			return z, nil
		}
	}
	return nil, fmt.Errorf("peer is a %s socket, want %s", got, strings.Join(peerTypes, " or "))
}

func readyCommand(socketType string) []byte {
	var b bytes.Buffer
	b.WriteByte(5)
	b.WriteString("READY")
	b.WriteByte(byte(len("Socket-Type")))
	b.WriteString("Socket-Type")
	binary.Write(&b, binary.BigEndian, uint32(len(socketType)))
	b.WriteString(socketType)
	return b.Bytes()
}

// parseCommand splits a command frame into its name and data.
func parseCommand(body []byte) (string, []byte, error) {
	if len(body) < 1 || len(body) < 1+int(body[0]) {
		return "", nil, errors.New("truncated command")
	}
	n := int(body[0])
	return string(body[1 : 1+n]), body[1+n:], nil
}

// readyProperty returns a READY metadata value, or "".
func readyProperty(props []byte, name string) string {
	for len(props) > 0 {
		n := int(props[0])
		if len(props) < 1+n+4 {
			return ""
		}
		key := string(props[1 : 1+n])
		size := binary.BigEndian.Uint32(props[1+n:])
		props = props[1+n+4:]
		if uint64(size) > uint64(len(props)) {
			return ""
		}
		if strings.EqualFold(key, name) {
			return string(props[:size])
		}
		props = props[size:]
	}
	return ""
}

// writeFrame buffers one frame; Flush sends.
func (z *zmtpConn) writeFrame(flags byte, body []byte) {
	if len(body) > 255 {
		z.w.WriteByte(flags | flagLong)
		binary.Write(z.w, binary.BigEndian, uint64(len(body)))
	} else {
		z.w.WriteByte(flags)
		z.w.WriteByte(byte(len(body)))
	}
	z.w.Write(body)
}

// writeMessage sends a multi-frame message, giving up at deadline.
func (z *zmtpConn) writeMessage(deadline time.Time, frames ...[]byte) error {
	z.wmu.Lock()
	defer z.wmu.Unlock()
	for i, f := range frames {
		var flags byte
		if i < len(frames)-1 {
			flags = flagMore
		}
		z.writeFrame(flags, f)
	}
	return z.flush(deadline)
}

// writeCommand sends one command frame, giving up at deadline.
func (z *zmtpConn) writeCommand(deadline time.Time, body []byte) error {
	z.wmu.Lock()
	defer z.wmu.Unlock()
	z.writeFrame(flagCommand, body)
	return z.flush(deadline)
}

func (z *zmtpConn) flush(deadline time.Time) error {
	if err := z.Conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return z.w.Flush()
}

// Heartbeats (ZMTP 3.1, RFC 37): PING carries a TTL in deciseconds and up
// to 16 bytes of context, which PONG echoes.
const maxPingContext = 16

// pingCommand is our PING: TTL 0 (we ask nothing of the peer) and no context.
var pingCommand = []byte("\x04PING\x00\x00")

// pongCommand answers a PING's data (TTL and context).
func pongCommand(ping []byte) []byte {
	var context []byte
	if len(ping) > 2 {
		context = ping[2:min(len(ping), 2+maxPingContext)]
	}
	return append([]byte("\x04PONG"), context...)
}

// readFrame reads one frame (message or command).
func (z *zmtpConn) readFrame() (byte, []byte, error) {
	flags, err := z.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	var size uint64
	if flags&flagLong != 0 {
		var b [8]byte
		if _, err := io.ReadFull(z.r, b[:]); err != nil {
			return 0, nil, err
		}
		size = binary.BigEndian.Uint64(b[:])
	} else {
		b, err := z.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		size = uint64(b)
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
	return flags&flagMore == 0, nil
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
		case flags&flagCommand != 0:
			name, data, err := parseCommand(body)
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
