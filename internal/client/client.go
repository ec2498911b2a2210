// Package client sends fedmsg messages to a relay the way short-lived
// producers need: it waits until a relay is really listening instead of
// sleeping, gives up with a clear error after a timeout instead of hanging,
// and can ask the relay to confirm each message (relay_inbound_confirm).
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ErrNoRelay means no address answered within the timeout.
var ErrNoRelay = errors.New("no relay answered")

// retryInterval is how often a refused connection is retried before the
// timeout, as libzmq's reconnect interval does (a relay may be starting).
const retryInterval = 100 * time.Millisecond

// RefusedError is the relay's refusal of one message (`refused:<reason>`).
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "relay refused the message: " + e.Reason }

// Conn is a connection to one relay, chosen among the addresses dialled.
// It answers the relay's heartbeats and pings an idle relay itself; when the
// relay goes away (a restart under a long-running producer) or stops
// answering, the next Send dials the addresses again, as libzmq would
// reconnect.
type Conn struct {
	Addr    string // the address that answered
	z       *zmtpConn
	s       *session
	timeout time.Duration
	confirm bool
	log     hclog.Logger
	redial  func(timeout time.Duration) (*Conn, error)
	broken  bool // confirmer: the last exchange failed
}

// DialPublisher connects as a PUB socket to every address of relay_inbound
// and keeps the first whose relay subscribes to a prefix of topic: the
// subscription arriving proves the relay's SUB socket is attached, so a
// message sent now is not lost to the slow-joiner race fedmsg papered over
// with post_init_sleep.
func DialPublisher(addrs []string, topic string, timeout time.Duration, log hclog.Logger) (*Conn, error) {
	return dialPublisher(addrs, topic, timeout, defaultHeartbeat, log)
}

func dialPublisher(addrs []string, topic string, timeout time.Duration, hb heartbeat, log hclog.Logger) (*Conn, error) {
	c, err := dial(addrs, timeout, hb, log, false, func(c net.Conn) (*zmtpConn, error) {
		z, err := handshake(c, "PUB", "SUB", "XSUB")
		if err != nil {
			return nil, err
		}
		return z, z.waitSubscription(topic)
	})
	if err != nil {
		return nil, err
	}
	c.redial = func(timeout time.Duration) (*Conn, error) {
		return dialPublisher(addrs, topic, timeout, hb, log)
	}
	return c, nil
}

// DialConfirmer connects as a DEALER socket to every address of
// relay_inbound_confirm and keeps the first whose ROUTER completes the
// handshake.
func DialConfirmer(addrs []string, timeout time.Duration, log hclog.Logger) (*Conn, error) {
	return dialConfirmer(addrs, timeout, defaultHeartbeat, log)
}

func dialConfirmer(addrs []string, timeout time.Duration, hb heartbeat, log hclog.Logger) (*Conn, error) {
	c, err := dial(addrs, timeout, hb, log, true, func(c net.Conn) (*zmtpConn, error) {
		return handshake(c, "DEALER", "ROUTER")
	})
	if err != nil {
		return nil, err
	}
	c.redial = func(timeout time.Duration) (*Conn, error) {
		return dialConfirmer(addrs, timeout, hb, log)
	}
	return c, nil
}

// attempt is the outcome of dialling one address.
type attempt struct {
	addr string
	z    *zmtpConn
	err  error
}

// dial tries every address at once until one is ready or the timeout ends.
func dial(addrs []string, timeout time.Duration, hb heartbeat, log hclog.Logger, confirm bool, ready func(net.Conn) (*zmtpConn, error)) (*Conn, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: no relay address configured", ErrNoRelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	results := make(chan attempt, len(addrs))
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- tryAddress(ctx, addr, ready, log)
		}()
	}
	go func() { wg.Wait(); close(results) }()

	var winner *Conn
	failures := map[string]error{}
	for a := range results {
		switch {
		case a.err != nil:
			failures[a.addr] = a.err
		case winner == nil:
			winner = &Conn{Addr: a.addr, z: a.z, s: start(a.z, hb, confirm), timeout: timeout, confirm: confirm, log: log}
			log.Debug("relay ready", "address", a.addr)
			cancel() // stop the other attempts
		default:
			a.z.Close()
		}
	}
	if winner != nil {
		return winner, nil
	}
	tried := make([]string, len(addrs))
	for i, addr := range addrs {
		tried[i] = fmt.Sprintf("%s (%v)", addr, failures[addr])
	}
	return nil, fmt.Errorf("%w within %s (tried %s)", ErrNoRelay, timeout, strings.Join(tried, ", "))
}

// tryAddress connects and runs ready, retrying failed attempts until ctx
// ends; it reports the last failure that was not the end of ctx itself.
func tryAddress(ctx context.Context, addr string, ready func(net.Conn) (*zmtpConn, error), log hclog.Logger) attempt {
	var reason error
	for {
		conn, err := dialAddress(ctx, addr)
		if err == nil {
			deadline, _ := ctx.Deadline()
			conn.SetDeadline(deadline)
			// Unblock the handshake when another address wins first.
			stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
			var z *zmtpConn
			z, err = ready(conn)
			stop()
			if err == nil {
				conn.SetDeadline(time.Time{})
				return attempt{addr: addr, z: z}
			}
			conn.Close()
		}
		if errors.Is(err, errUnsupportedEndpoint) {
			return attempt{addr: addr, err: err}
		}
		if ctx.Err() == nil || reason == nil {
			reason = err
		}
		log.Debug("relay not ready", "address", addr, "error", err)
		select {
		case <-ctx.Done():
			return attempt{addr: addr, err: describe(reason)}
		case <-time.After(retryInterval):
		}
	}
}

// describe words the usual reasons an address never became ready.
func describe(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("connection closed by peer: %w", err)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errors.New("no answer")
	}
	return err
}

// Send sends one two-frame message. On a confirmer it returns only once the
// relay answered: nil for `ok`, a *RefusedError for `refused:<reason>`, an
// error when no answer came within the timeout. A connection known to be
// lost is dialled again first; all of it takes at most the timeout.
func (c *Conn) Send(topic string, body []byte) error {
	deadline := time.Now().Add(c.timeout)
	if err := c.lost(); err != nil {
		c.log.Warn("connection to the relay lost, dialling again", "address", c.Addr, "error", err)
		fresh, err := c.redial(c.timeout)
		if err != nil {
			return err
		}
		c.s.close()
		c.z.Close()
		*c = *fresh
	}
	err := c.exchange(topic, body, deadline)
	var refused *RefusedError
	c.broken = err != nil && !errors.As(err, &refused)
	return err
}

// lost says why the connection cannot carry the next message, or nil.
func (c *Conn) lost() error {
	if c.confirm && c.broken {
		return errors.New("the last exchange failed")
	}
	return c.s.alive()
}

func (c *Conn) exchange(topic string, body []byte, deadline time.Time) error {
	if err := c.z.writeMessage(deadline, []byte(topic), body); err != nil {
		return fmt.Errorf("send to %s: %w", c.Addr, err)
	}
	if !c.confirm {
		return nil
	}
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	var reply []byte
	select {
	case reply = <-c.s.replies:
	case <-c.s.done:
		select {
		case reply = <-c.s.replies: // answered just before the end
		default:
			return fmt.Errorf("connection to %s lost before the relay confirmed the message (it may have been published): %w", c.Addr, c.s.err)
		}
	case <-wait.C:
		return fmt.Errorf("no confirmation from %s within %s", c.Addr, c.timeout)
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

// Close ends the connection. For a publisher it first half-closes and waits
// (up to the timeout) for the relay to close its side, which it does only
// after reading everything we sent: the bytes have really left.
func (c *Conn) Close() error {
	c.s.close()
	defer c.z.Close()
	if c.confirm {
		return nil
	}
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.z.Conn.(closeWriter); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("close connection to %s: %w", c.Addr, err)
		}
	}
	select {
	case <-c.s.done:
		return nil
	case <-time.After(c.timeout):
		return fmt.Errorf("relay %s did not acknowledge the end of the stream within %s", c.Addr, c.timeout)
	}
}
