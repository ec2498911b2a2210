// Package client sends fedmsg messages to a relay the way short-lived
// producers need: it waits until a relay is really listening instead of
// sleeping, gives up with a clear error after a timeout instead of hanging,
// and can ask the relay to confirm each message (relay_inbound_confirm).
package client

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	zmq "github.com/pebbe/zmq4"
)

// ErrNoRelay means no address answered within the timeout.
var ErrNoRelay = errors.New("no relay answered")

// RefusedError is the relay's refusal of one message (`refused:<reason>`).
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "relay refused the message: " + e.Reason }

// Conn is a connection to one relay, chosen among the addresses dialled.
type Conn struct {
	Addr    string // the address that answered
	ctx     *zmq.Context
	sock    *zmq.Socket
	timeout time.Duration
	confirm bool
	log     hclog.Logger
}

// DialPublisher connects a PUB-side (XPUB) socket to every address of
// relay_inbound and keeps the first whose relay subscribes to a prefix of
// topic: the subscription arriving proves the relay's SUB socket is attached,
// so a message sent now is not lost to the slow-joiner race fedmsg papered
// over with post_init_sleep.
func DialPublisher(addrs []string, topic string, timeout time.Duration, log hclog.Logger) (*Conn, error) {
	return dial(addrs, timeout, false, func(s *zmq.Socket) (bool, error) {
		for {
			frame, err := s.RecvBytes(zmq.DONTWAIT)
			if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
				return false, nil
			}
			if err != nil {
				return false, fmt.Errorf("read subscription: %w", err)
			}
			if len(frame) > 0 && frame[0] == 1 && strings.HasPrefix(topic, string(frame[1:])) {
				return true, nil
			}
		}
	}, log)
}

// DialConfirmer connects a DEALER socket to every address of
// relay_inbound_confirm and keeps the first whose connection completes.
func DialConfirmer(addrs []string, timeout time.Duration, log hclog.Logger) (*Conn, error) {
	return dial(addrs, timeout, true, nil, log)
}

// dial connects one socket per address and waits until one is ready: for a
// publisher, ready(sock) on input; for a confirmer, writable, which with
// ZMQ_IMMEDIATE means the connection to the relay is complete.
func dial(addrs []string, timeout time.Duration, confirm bool, ready func(*zmq.Socket) (bool, error), log hclog.Logger) (*Conn, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: no relay address configured", ErrNoRelay)
	}
	ctx, err := zmq.NewContext()
	if err != nil {
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	deadline := time.Now().Add(timeout)
	poller := zmq.NewPoller()
	socks := map[*zmq.Socket]string{}
	closeAll := func(keep *zmq.Socket) {
		for s := range socks {
			if s != keep {
				_ = s.SetLinger(0)
				_ = s.Close()
			}
		}
	}
	for _, addr := range addrs {
		s, err := newSocket(ctx, addr, confirm, timeout)
		if err != nil {
			log.Warn("cannot use relay address", "address", addr, "error", err)
			continue
		}
		socks[s] = addr
		if confirm {
			poller.Add(s, zmq.POLLOUT)
		} else {
			poller.Add(s, zmq.POLLIN)
		}
	}
	for len(socks) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		polled, err := poller.Poll(left)
		if err != nil {
			closeAll(nil)
			_ = ctx.Term()
			return nil, fmt.Errorf("poll relay sockets: %w", err)
		}
		for _, p := range polled {
			ok := confirm
			if !confirm {
				if ok, err = ready(p.Socket); err != nil {
					log.Warn("relay connection failed", "address", socks[p.Socket], "error", err)
					continue
				}
			}
			if ok {
				closeAll(p.Socket)
				log.Debug("relay ready", "address", socks[p.Socket], "after", timeout-time.Until(deadline))
				return &Conn{Addr: socks[p.Socket], ctx: ctx, sock: p.Socket, timeout: timeout, confirm: confirm, log: log}, nil
			}
		}
	}
	closeAll(nil)
	_ = ctx.Term()
	return nil, fmt.Errorf("%w within %s (tried %s)", ErrNoRelay, timeout, strings.Join(addrs, ", "))
}

func newSocket(ctx *zmq.Context, addr string, confirm bool, timeout time.Duration) (*zmq.Socket, error) {
	kind := zmq.XPUB
	if confirm {
		kind = zmq.DEALER
	}
	s, err := ctx.NewSocket(kind)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	opts := []error{s.SetSndtimeo(timeout), s.SetRcvtimeo(timeout), s.SetLinger(timeout)}
	if confirm {
		// Queue nothing until the connection is up, so writable means connected.
		opts = append(opts, s.SetImmediate(true))
	} else {
		// Block (up to the timeout) rather than drop when the queue is full.
		opts = append(opts, s.SetXpubNodrop(true))
	}
	if err := errors.Join(opts...); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("socket options: %w", err)
	}
	if err := s.Connect(addr); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return s, nil
}

// Send sends one two-frame message. On a confirmer it returns only once the
// relay answered: nil for `ok`, a *RefusedError for `refused:<reason>`, an
// error when no answer came within the timeout.
func (c *Conn) Send(topic string, body []byte) error {
	if _, err := c.sock.SendMessage(topic, body); err != nil {
		return fmt.Errorf("send to %s: %w", c.Addr, err)
	}
	if !c.confirm {
		return nil
	}
	reply, err := c.sock.RecvBytes(0)
	if err != nil {
		return fmt.Errorf("no confirmation from %s within %s: %w", c.Addr, c.timeout, err)
	}
	switch r := string(reply); {
	case r == "ok":
		return nil
	case strings.HasPrefix(r, "refused:"):
		return &RefusedError{Reason: strings.TrimPrefix(r, "refused:")}
	default:
		return fmt.Errorf("unexpected reply from %s: %q", c.Addr, r)
	}
}

// Close waits up to the timeout for queued messages to leave, then releases
// the socket.
func (c *Conn) Close() error {
	err := c.sock.Close()
	if termErr := c.ctx.Term(); err == nil {
		err = termErr
	}
	if err != nil {
		return fmt.Errorf("close connection to %s: %w", c.Addr, err)
	}
	return nil
}
