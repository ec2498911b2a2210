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

// HandOver is the drain's first step when the listening sockets outlive
// this relay (socket activation). Closing the producers' connections would
// lose what is in flight on them; instead each is half-closed (our sending
// direction only): the producer's libzmq sees the end of the stream, closes
// the connection itself after what it already sent, which is still read
// here, and keeps the rest queued for its next connection, to the next
// relay. Confirm endpoints are unbound at once, as StopInbound does (a
// confirming client resends). Call ProducersLeft until it is 0, then
// FinishHandOver.
func (s *Sockets) HandOver() error {
	var errs []error
	if s.confirm != nil {
		errs = append(errs, s.unbindAll(s.confirm))
	}
	s.ProducersLeft()
	return errors.Join(errs...)
}

// ProducersLeft half-closes the producers' connections, including those
// accepted since HandOver, and returns how many are still open.
func (s *Sockets) ProducersLeft() int {
	fds := s.producerConns()
	for _, fd := range fds {
		_ = syscall.Shutdown(fd, syscall.SHUT_WR) // a second time, or on a closing connection: nothing to do
	}
	return len(fds)
}

// FinishHandOver stops accepting producers: they wait in the kernel's queue
// of the inherited socket for the next relay.
func (s *Sockets) FinishHandOver() error { return s.unbindAll(s.sub) }

// producerConns finds the connections the SUB socket accepted: this
// process's stream sockets, other than listeners, whose local address is one
// the SUB socket listens on. libzmq does not expose them, and its monitor
// events miss those accepted before monitoring starts (right at start, when
// the kernel's queue of an inherited socket is taken).
func (s *Sockets) producerConns() []int {
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
		if sa, err := syscall.Getsockname(fd); err == nil && servedBy(sa, s.bound[s.sub]) {
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
