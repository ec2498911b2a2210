// Package zmtp is the part of ZMTP 3 (RFC 23, RFC 37) that both the client
// tools and the relay's inbound listener speak: the NULL-mechanism greeting,
// READY, PING/PONG and frame headers. Connections and their state stay with
// each user.
package zmtp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Frame flags.
const (
	FlagMore    = 0x01
	FlagLong    = 0x02
	FlagCommand = 0x04
)

// GreetingSize is the fixed length of a ZMTP 3 greeting.
const GreetingSize = 64

// Greeting is ours: signature, version 3.0, mechanism NULL, as-server 0.
// Version 3.0 makes libzmq peers use 3.0 conventions with us: subscriptions
// as messages with a leading 0x01 byte, not SUBSCRIBE commands.
var Greeting = func() []byte {
	g := make([]byte, GreetingSize)
	g[0], g[9], g[10], g[11] = 0xff, 0x7f, 3, 0
	copy(g[12:32], "NULL")
	return g
}()

// CheckGreeting accepts a peer's greeting for ZMTP 3 with the NULL mechanism.
func CheckGreeting(peer []byte) error {
	if len(peer) < GreetingSize || peer[0] != 0xff || peer[9] != 0x7f || peer[10] < 3 {
		return errors.New("peer does not speak ZMTP 3")
	}
	if mech := string(bytes.TrimRight(peer[12:32], "\x00")); mech != "NULL" {
		return fmt.Errorf("peer wants security mechanism %.20q", mech)
	}
	return nil
}

// ReadGreeting reads a peer's greeting and checks it as CheckGreeting does.
func ReadGreeting(r io.Reader) error {
	var peer [GreetingSize]byte
	if _, err := io.ReadFull(r, peer[:]); err != nil {
		return err
	}
	return CheckGreeting(peer[:])
}

// ReadyCommand is the body of our READY command as socketType.
func ReadyCommand(socketType string) []byte {
	var b bytes.Buffer
	b.WriteByte(5)
	b.WriteString("READY")
	b.WriteByte(byte(len("Socket-Type")))
	b.WriteString("Socket-Type")
	binary.Write(&b, binary.BigEndian, uint32(len(socketType)))
	b.WriteString(socketType)
	return b.Bytes()
}

// ParseCommand splits a command frame into its name and data.
func ParseCommand(body []byte) (string, []byte, error) {
	if len(body) < 1 || len(body) < 1+int(body[0]) {
		return "", nil, errors.New("truncated command")
	}
	n := int(body[0])
	return string(body[1 : 1+n]), body[1+n:], nil
}

// ReadyProperty returns a READY metadata value, or "".
func ReadyProperty(props []byte, name string) string {
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

// CheckReady accepts a peer's first command: READY from a socket of one of
// peerTypes.
func CheckReady(flags byte, body []byte, peerTypes ...string) error {
	name, props, err := ParseCommand(body)
	if err != nil || flags&FlagCommand == 0 {
		return fmt.Errorf("bad READY from peer: %v", err)
	}
	if name == "ERROR" {
		return fmt.Errorf("peer refused the handshake: %q", props)
	}
	if name != "READY" {
		return fmt.Errorf("peer sent %.20q instead of READY", name)
	}
	got := ReadyProperty(props, "Socket-Type")
	for _, t := range peerTypes {
		if got == t {
			return nil
		}
	}
	return fmt.Errorf("peer is a %.20q socket, want %s", got, strings.Join(peerTypes, " or "))
}

// Heartbeats (ZMTP 3.1, RFC 37): PING carries a TTL in deciseconds and up
// to 16 bytes of context, which PONG echoes.
const MaxPingContext = 16

// PingCommand is a PING with TTL 0 (we ask nothing of the peer) and no context.
var PingCommand = []byte("\x04PING\x00\x00")

// PongCommand answers a PING's data (TTL and context).
func PongCommand(ping []byte) []byte {
	var context []byte
	if len(ping) > 2 {
		context = ping[2:min(len(ping), 2+MaxPingContext)]
	}
	return append([]byte("\x04PONG"), context...)
}

// WriteFrame buffers one frame.
func WriteFrame(w *bufio.Writer, flags byte, body []byte) {
	if len(body) > 255 {
		w.WriteByte(flags | FlagLong)
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(body)))
		w.Write(n[:])
	} else {
		w.WriteByte(flags)
		w.WriteByte(byte(len(body)))
	}
	w.Write(body)
}

// ReadHeader reads a frame's flags and body size, leaving the body unread,
// so the caller decides whether it may hold that many bytes before it does.
func ReadHeader(r *bufio.Reader) (flags byte, size uint64, err error) {
	if flags, err = r.ReadByte(); err != nil {
		return 0, 0, err
	}
	if flags&FlagLong == 0 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		return flags, uint64(b), nil
	}
	// Peek, not io.ReadFull into an array: the array would escape to the
	// heap, an allocation per long frame.
	b, err := r.Peek(8)
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	size = binary.BigEndian.Uint64(b)
	r.Discard(8)
	return flags, size, nil
}

// FrameSize is the encoded size of a frame with an n-byte body.
func FrameSize(n int) int {
	if n > 255 {
		return 9 + n
	}
	return 2 + n
}

// AppendFrame appends one encoded frame to dst: the outbound engine encodes
// a message once, headers and bodies in one buffer, for all subscribers.
func AppendFrame(dst []byte, flags byte, body []byte) []byte {
	if len(body) > 255 {
		dst = append(dst, flags|FlagLong)
		dst = binary.BigEndian.AppendUint64(dst, uint64(len(body)))
	} else {
		dst = append(dst, flags, byte(len(body)))
	}
	return append(dst, body...)
}

// Subscription commands (ZMTP 3.1); ZMTP 3.0 peers send a message whose
// first byte is SubscribeByte or CancelByte instead.
const (
	SubscribeCommand = "SUBSCRIBE"
	CancelCommand    = "CANCEL"
	SubscribeByte    = 1
	CancelByte       = 0
)
