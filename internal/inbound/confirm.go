package inbound

import (
	"errors"
	"net"
	"time"
	"unsafe"

	"github.com/fedora-infra/fedmsg-relay/internal/endpoint"
	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// confirmPeers are the socket types a confirm endpoint (a ROUTER) accepts:
// fedmsg-logger --confirm's DEALER, and REQ, whose messages and replies
// carry an empty delimiter frame first.
var confirmPeers = []string{"DEALER", "REQ"}

// replyQueue bounds the replies waiting for a confirming client's writer.
// A client that reads them never comes close (its writer keeps up as long as
// the socket takes them); one that stops reading fills the socket's buffer,
// then this queue, and is cut off.
const replyQueue = 256

// confirmCost is what a confirming client's connection costs besides
// connCost: its reply queue.
const confirmCost = replyQueue * int64(unsafe.Sizeof([]byte(nil)))

// confirmConn is what a confirming client's connection has besides a
// producer's.
type confirmConn struct {
	req     bool        // the peer is a REQ: strip and return the delimiter
	replies chan []byte // reply texts, never copied: they are the caller's constants
}

func newConfirmConn() *confirmConn {
	return &confirmConn{replies: make(chan []byte, replyQueue)}
}

// setPeer records the peer's socket type from its READY command.
func (cc *confirmConn) setPeer(ready []byte) {
	_, props, _ := zmtp.ParseCommand(ready) // CheckReady accepted it
	cc.req = zmtp.ReadyProperty(props, "Socket-Type") == "REQ"
}

func (c *conn) fixedCost() int64 {
	if c.confirm != nil {
		return connCost + confirmCost
	}
	return connCost
}

// ReplyTo is the confirming client a message came from, for Reply.
type ReplyTo struct{ c *conn }

// ReplyTo returns whom to answer for m, and false for a producer's message.
// It stays valid after Release.
func (m *Message) ReplyTo() (ReplyTo, bool) {
	if m.conn == nil || m.conn.confirm == nil {
		return ReplyTo{}, false
	}
	return ReplyTo{m.conn}, true
}

// Reply queues text (kept, not copied: it must not change) as the answer
// to one message of the client, in the order the messages were taken. It
// never waits: the reply to a client that has left is dropped, and a client
// whose replies pile up because it does not read them is cut off. Both are
// reported as ReplyDropped.
func (s *Server) Reply(to ReplyTo, text []byte) {
	c := to.c
	if c.IsGone() {
		reason := ReasonPeerClosed // or shut down: either way nobody to answer
		if c.ClosedFor() == ReasonStalled {
			reason = ReasonStalled // its writer gave up on it
		}
		s.event(Event{Kind: endpoint.ReplyDropped, Reason: reason, Confirm: true})
		return
	}
	select {
	case c.confirm.replies <- text:
	default:
		s.event(Event{Kind: endpoint.ReplyDropped, Reason: ReasonStalled, Confirm: true})
		c.Close(ReasonStalled)
	}
}

// writeReplies sends the client its replies as they come, all that are
// waiting in one write. A client that does not take them within the write
// timeout is cut off.
func (c *conn) writeReplies() {
	defer c.srv.wg.Done()
	replies := c.confirm.replies
	for {
		var text []byte
		select {
		case <-c.Gone():
			return
		case text = <-replies:
		}
		c.wmu.Lock()
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout()))
		for more := true; more; {
			if c.confirm.req {
				zmtp.WriteFrame(c.w, zmtp.FlagMore, nil)
			}
			zmtp.WriteFrame(c.w, 0, text)
			select {
			case text = <-replies:
			default:
				more = false
			}
		}
		err := c.w.Flush()
		c.wmu.Unlock()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.Close(ReasonStalled)
			} else {
				c.Close(ReasonPeerClosed)
			}
			return
		}
	}
}

// writeTimeout is how long a write to the peer may take.
func (c *conn) writeTimeout() time.Duration { return max(c.srv.opts.HeartbeatInterval, time.Second) }
