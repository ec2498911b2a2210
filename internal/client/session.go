package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// heartbeat says how the client keeps an idle connection checked.
type heartbeat struct {
	interval time.Duration // ping the relay after this long without hearing from it
	timeout  time.Duration // give the connection up after this long without hearing from it
}

// defaultHeartbeat pings well within the relay's own heartbeat timeout and
// gives up after three unanswered pings, as libzmq does.
var defaultHeartbeat = heartbeat{interval: 10 * time.Second, timeout: 30 * time.Second}

// errSilent ends a session whose peer stopped answering pings.
var errSilent = errors.New("the relay stopped answering heartbeats")

// session runs on an established connection: a reader that answers the
// relay's heartbeats and hands replies over, and a pinger that checks the
// connection while the producer is idle. Without them an idle producer is
// cut off by the relay's heartbeat timeout, or keeps a dead connection
// until its next message fails.
type session struct {
	z       *zmtpConn
	hb      heartbeat
	replies chan []byte   // confirmer: each reply's last frame; nil: messages are discarded
	done    chan struct{} // closed when the reader stops
	stop    chan struct{} // closed by close: stop pinging, ignore failed pongs
	heard   atomic.Int64  // unix nanoseconds of the last frame from the peer
	ttl     atomic.Int64  // the peer's PING TTL: silence it allows itself, 0 for none

	once sync.Once
	err  error // why the reader stopped, set before done is closed
}

// start runs a session on z; with replies, messages from the peer are
// replies to ours, at most one outstanding.
func start(z *zmtpConn, hb heartbeat, replies bool) *session {
	s := &session{z: z, hb: hb, done: make(chan struct{}), stop: make(chan struct{})}
	if replies {
		s.replies = make(chan []byte, 1)
	}
	s.heard.Store(time.Now().UnixNano())
	go s.read()
	go s.ping()
	return s
}

// fail ends the session with err, closing the connection.
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.err = err
		s.z.Close()
	})
}

// alive returns why the session cannot carry a message, or nil.
func (s *session) alive() error {
	select {
	case <-s.done:
		return s.err
	default:
	}
	if s.silent() > s.deadAfter() {
		s.fail(errSilent)
		return errSilent
	}
	return nil
}

func (s *session) silent() time.Duration { return time.Since(time.Unix(0, s.heard.Load())) }

// deadAfter is how long a silent peer is given: our timeout, or less if the
// peer's PINGs promise more traffic than that (RFC 37's TTL).
func (s *session) deadAfter() time.Duration {
	if ttl := time.Duration(s.ttl.Load()); ttl > 0 && ttl < s.hb.timeout {
		return ttl
	}
	return s.hb.timeout
}

// close stops pinging; the caller closes the connection or half-closes it.
func (s *session) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
}

func (s *session) read() {
	defer close(s.done)
	var m message
	for {
		flags, body, err := s.z.readFrame()
		if err != nil {
			s.fail(err)
			return
		}
		s.heard.Store(time.Now().UnixNano())
		if flags&zmtp.FlagCommand != 0 {
			if err := s.command(body); err != nil {
				s.fail(err)
				return
			}
			continue
		}
		if s.replies == nil {
			continue // a publisher needs nothing the relay sends after subscribing
		}
		complete, err := m.add(flags, body)
		if err != nil {
			s.fail(err)
			return
		}
		if !complete {
			continue
		}
		select {
		case s.replies <- m.frames[len(m.frames)-1]:
		default:
			s.fail(errors.New("the relay sent a reply to no message"))
			return
		}
		m = message{}
	}
}

// command handles a command from the peer: PING is answered, the rest
// (PONG, SUBSCRIBE) only proves the peer is alive.
func (s *session) command(body []byte) error {
	name, data, err := zmtp.ParseCommand(body)
	switch {
	case err != nil:
		return err
	case name == "ERROR":
		return fmt.Errorf("the relay closed the connection: %q", data)
	case name != "PING":
		return nil
	}
	if len(data) >= 2 { // the TTL, in deciseconds
		s.ttl.Store(int64(binary.BigEndian.Uint16(data)) * int64(100*time.Millisecond))
	}
	err = s.z.writeCommand(time.Now().Add(s.hb.interval), zmtp.PongCommand(data))
	select {
	case <-s.stop:
		return nil // half-closed: the relay is reading our last bytes
	default:
		return err
	}
}

// ping sends a PING whenever the peer has been silent for an interval and
// ends the session once it has been silent for too long.
func (s *session) ping() {
	tick := time.NewTicker(s.hb.interval / 2) // a ping leaves at most 1.5 intervals after the last frame
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-s.stop:
			return
		case <-tick.C:
		}
		silent := s.silent()
		switch {
		case silent > s.deadAfter():
			s.fail(errSilent)
			return
		case silent >= s.hb.interval:
			if err := s.z.writeCommand(time.Now().Add(s.hb.interval), zmtp.PingCommand); err != nil {
				s.fail(fmt.Errorf("ping: %w", err))
				return
			}
		}
	}
}
