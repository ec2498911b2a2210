package endpoint

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Disconnect reasons both Go engines give (Peer itself gives the first
// two); each engine adds its own in its Reasons. A fixed set, so they can
// be metric labels.
const (
	ReasonPeerClosed = "peer_closed"
	ReasonTimeout    = "timeout"
	ReasonHandshake  = "handshake"
	ReasonProtocol   = "protocol"
	ReasonOversize   = "oversize"
	ReasonOverShare  = "over_share"
	ReasonTooMany    = "too_many_connections"
	ReasonShutdown   = "shutdown"
)

// Reasons lists the disconnect reasons both engines give.
func Reasons() []string {
	return []string{ReasonPeerClosed, ReasonTimeout, ReasonHandshake, ReasonProtocol,
		ReasonOversize, ReasonOverShare, ReasonTooMany, ReasonShutdown}
}

// Peer is the life of one connection accepted by a Go engine: it ends once,
// for the first reason given, and a heartbeat gives up a peer that falls
// silent. The engines embed it by value in their connection, so it costs no
// indirection on their read paths. Init it before use.
type Peer struct {
	nc       net.Conn
	gone     chan struct{}
	goneOnce sync.Once
	reason   atomic.Pointer[string] // why the relay closed it, if it did

	heard  atomic.Bool // the peer sent something since the last heartbeat
	silent int         // heartbeat intervals without a word, on the timer's goroutine
	ping   *time.Timer
}

// Init makes p the life of nc.
func (p *Peer) Init(nc net.Conn) {
	p.nc = nc
	p.gone = make(chan struct{})
}

// Gone is closed once the connection is.
func (p *Peer) Gone() <-chan struct{} { return p.gone }

// IsGone reports whether the connection is closed.
func (p *Peer) IsGone() bool {
	select {
	case <-p.gone:
		return true
	default:
		return false
	}
}

// Close disconnects the peer for reason, if nothing did before; whoever
// reads or writes the connection notices and ends.
func (p *Peer) Close(reason string) {
	p.goneOnce.Do(func() {
		p.reason.Store(&reason)
		close(p.gone)
		p.nc.Close()
	})
}

// ClosedFor is the reason Close was given, "" before it was.
func (p *Peer) ClosedFor() string {
	if r := p.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// Heard notes a word from the peer: a load per call, a store once per
// heartbeat, so a reader may call it for every frame.
func (p *Peer) Heard() {
	if !p.heard.Load() {
		p.heard.Store(true)
	}
}

// StartHeartbeat calls ping every interval until StopHeartbeat or the end
// of the connection, and closes the connection for ReasonTimeout when the
// peer was not heard for three intervals (unless busy says it is judged
// otherwise) or ping fails. ping's PING has the peer answer with a PONG, a
// word from it even when it has nothing to send. A flag the reader sets,
// not a read deadline per frame, keeps clock reads and timer updates off
// the message path.
func (p *Peer) StartHeartbeat(interval time.Duration, ping func() error, busy func() bool) {
	p.ping = time.AfterFunc(time.Duration(math.MaxInt64), func() { p.heartbeat(interval, ping, busy) })
	p.ping.Reset(interval) // only now: heartbeat reads p.ping
}

// StopHeartbeat stops what StartHeartbeat started.
func (p *Peer) StopHeartbeat() { p.ping.Stop() }

func (p *Peer) heartbeat(interval time.Duration, ping func() error, busy func() bool) {
	if p.IsGone() {
		return
	}
	if p.heard.Swap(false) {
		p.silent = 0
	} else if p.silent++; p.silent >= 3 && (busy == nil || !busy()) {
		p.Close(ReasonTimeout)
		return
	}
	if ping() != nil {
		p.Close(ReasonTimeout)
		return
	}
	p.ping.Reset(interval)
}

// EndReason names why the connection ended: the reason it was closed for,
// if it was; else the one err carries (ReasonError), a timeout or the peer
// closing; else otherwise.
func (p *Peer) EndReason(err error, otherwise string) string {
	if r := p.ClosedFor(); r != "" {
		return r
	}
	var re *ReasonError
	var ne net.Error
	switch {
	case errors.As(err, &re):
		return re.Reason
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
		return ReasonPeerClosed
	}
	return otherwise
}

// ReasonError is an error with the disconnect reason it counts as.
type ReasonError struct {
	Reason string
	Err    error
}

func (e *ReasonError) Error() string { return e.Err.Error() }

// Errorf is a ReasonError for reason, its error formatted as fmt.Errorf's.
func Errorf(reason, format string, args ...any) error {
	return &ReasonError{reason, fmt.Errorf(format, args...)}
}
