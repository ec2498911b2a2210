package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	zmq "github.com/pebbe/zmq4"
)

// HandOver is the drain when the listening sockets outlive this relay
// (socket activation). Closing the producers' connections would lose what is
// in flight on them; instead each is half-closed (our sending direction
// only): the producer's libzmq sees the end of the stream, closes the
// connection itself after what it already sent, which is still read here,
// and keeps the rest queued for its next connection, to the next relay.
// Confirming clients are served to the end: each closes its connection once
// it has its reply. Forward until PeersLeft is 0, then call FinishHandOver.
func (s *Sockets) HandOver() { s.PeersLeft() }

// PeersLeft half-closes the producers' connections, including those accepted
// since HandOver, and returns how many producers and confirming clients are
// still connected.
func (s *Sockets) PeersLeft() int {
	fds := s.accepted(s.sub)
	for _, fd := range fds {
		_ = syscall.Shutdown(fd, syscall.SHUT_WR) // a second time, or on a closing connection: nothing to do
	}
	n := len(fds)
	if s.goIn != nil {
		n += s.goIn.srv.HalfClose()
	}
	if s.confirm != nil {
		n += len(s.accepted(s.confirm))
	}
	return n
}

// FinishHandOver stops accepting producers and confirming clients: they wait
// in the kernel's queue of the inherited sockets for the next relay.
func (s *Sockets) FinishHandOver() error {
	if s.goIn != nil {
		s.goIn.stop()
	}
	err := s.unbindAll(s.sub)
	if s.confirm != nil {
		err = errors.Join(err, s.unbindAll(s.confirm))
	}
	return err
}

// accepted finds the connections sock accepted: this process's stream
// sockets, other than listeners, whose local address is one sock listens on.
// libzmq does not expose them, and its monitor events miss those accepted
// before monitoring starts (right at start, when the kernel's queue of an
// inherited socket is taken).
func (s *Sockets) accepted(sock *zmq.Socket) []int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var fds []int
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || typ != syscall.SOCK_STREAM {
			continue
		}
		if listening, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || listening != 0 {
			continue
		}
		if sa, err := syscall.Getsockname(fd); err == nil && servedBy(sa, s.bound[sock]) {
			fds = append(fds, fd)
		}
	}
	return fds
}

// servedBy reports whether local address sa is one of the bound endpoints.
func servedBy(sa syscall.Sockaddr, endpoints []string) bool {
	for _, ep := range endpoints {
		scheme, addr, _ := strings.Cut(ep, "://")
		_, port, _ := net.SplitHostPort(addr)
		switch a := sa.(type) {
		case *syscall.SockaddrInet4:
			if scheme == "tcp" && port == strconv.Itoa(a.Port) {
				return true
			}
		case *syscall.SockaddrInet6:
			if scheme == "tcp" && port == strconv.Itoa(a.Port) {
				return true
			}
		case *syscall.SockaddrUnix:
			if scheme == "ipc" && a.Name == addr {
				return true
			}
		}
	}
	return false
}

func (s *Sockets) unbindAll(sock *zmq.Socket) error {
	var errs []error
	for _, ep := range s.bound[sock] {
		if ep == injectEndpoint {
			continue
		}
		if err := sock.Unbind(ep); err != nil {
			errs = append(errs, fmt.Errorf("unbind %s: %w", ep, err))
		}
	}
	return errors.Join(errs...)
}
