package endpoint

// EventKind says what happened to a connection.
type EventKind int

// Connection events.
const (
	Accepted        EventKind = iota // a TCP connection, before the handshake
	HandshakeFailed                  // it ended before the handshake finished; Reason says why
	Disconnected                     // it ended (after HandshakeFailed, if so); Reason says why
	ReplyDropped                     // inbound: a confirm reply was not sent, its client had left or stopped reading
)

// Event is one connection event of a Go engine, reported through its
// Options.Event.
type Event struct {
	Kind    EventKind
	Reason  string
	Confirm bool // inbound: on a confirm endpoint
	// Outbound: the subscriber, and on Disconnected the messages it was
	// sent and lost.
	Peer          string
	Sent, Dropped uint64
}
