package transport

import (
	"fmt"
	"os"
	"strings"

	zmq "github.com/pebbe/zmq4"
)

// StatusPublisher is a PUB socket for single-frame status documents (the
// moksha monitoring socket). It belongs to one goroutine.
type StatusPublisher struct{ sock *zmq.Socket }

// OpenStatusPublisher binds endpoint; for an ipc:// path it sets the socket
// file's mode (nagios, in group nrpe, must be able to write to it).
func (s *Sockets) OpenStatusPublisher(endpoint string, mode os.FileMode) (*StatusPublisher, error) {
	sock, err := s.ctx.NewSocket(zmq.PUB)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := sock.SetLinger(0); err != nil {
		sock.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := sock.Bind(endpoint); err != nil {
		sock.Close()
		return nil, fmt.Errorf("bind %s: %w", endpoint, err)
	}
	if path, ok := strings.CutPrefix(endpoint, "ipc://"); ok && !strings.HasPrefix(path, "@") {
		if err := os.Chmod(path, mode); err != nil {
			sock.Close()
			return nil, fmt.Errorf("status socket mode: %w", err)
		}
	}
	return &StatusPublisher{sock: sock}, nil
}

// Send publishes one single-frame document; it never blocks.
func (p *StatusPublisher) Send(doc []byte) error {
	_, err := p.sock.SendBytes(doc, zmq.DONTWAIT)
	return err
}

// Close closes the socket.
func (p *StatusPublisher) Close() { p.sock.Close() }
