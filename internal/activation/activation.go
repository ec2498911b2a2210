// Package activation adopts listening sockets passed by systemd socket
// activation (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, the
// descriptors from 3 on) and matches each one to a configured ZeroMQ
// endpoint, so the relay binds libzmq to the socket systemd holds across
// restarts instead of opening a new one.
package activation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// firstFD is SD_LISTEN_FDS_START.
const firstFD = 3

// Listener is one inherited listening socket.
type Listener struct {
	FD   int
	Name string // from LISTEN_FDNAMES ("unknown" when systemd gave none)
	Addr string // as getsockname(2) reports it: "0.0.0.0:2003", "[::]:4001", "/run/x.sock"
	unix bool
}

func (l Listener) String() string { return fmt.Sprintf("fd %d (%s, %s)", l.FD, l.Name, l.Addr) }

// Listeners returns the sockets passed to this process, or none when
// LISTEN_PID names another process or LISTEN_FDS is unset. It unsets the
// variables, as sd_listen_fds(3) does, so that no child takes them for its
// own, and marks the descriptors close-on-exec.
func Listeners() ([]Listener, error) {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	if pid == "" || fds == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(pid); err != nil || p != os.Getpid() {
		return nil, nil // meant for another process
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("LISTEN_FDS=%q: not a count of descriptors", fds)
	}
	nameList := strings.Split(names, ":")
	var ls []Listener
	for i := range n {
		l := Listener{FD: firstFD + i, Name: "unknown"}
		if names != "" && i < len(nameList) {
			l.Name = nameList[i]
		}
		syscall.CloseOnExec(l.FD)
		if err := describe(&l); err != nil {
			return nil, fmt.Errorf("inherited fd %d (%s): %w", l.FD, l.Name, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// describe checks that l is a listening stream socket and reads its address.
func describe(l *Listener) error {
	if typ, err := syscall.GetsockoptInt(l.FD, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil {
		return fmt.Errorf("not a socket: %w", err)
	} else if typ != syscall.SOCK_STREAM {
		return errors.New("not a stream socket (ListenStream= is what libzmq takes)")
	}
	if on, err := syscall.GetsockoptInt(l.FD, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || on == 0 {
		return errors.New("not a listening socket")
	}
	sa, err := syscall.Getsockname(l.FD)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		l.Addr = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *syscall.SockaddrInet6:
		l.Addr = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	case *syscall.SockaddrUnix:
		l.Addr, l.unix = a.Name, true
	default:
		return fmt.Errorf("address family %T: only TCP and Unix sockets carry ZeroMQ", sa)
	}
	return nil
}

// Match assigns each listener to the one endpoint it serves and returns
// endpoint -> fd. tcp://*:PORT matches 0.0.0.0:PORT and [::]:PORT, a host
// name matches any address it resolves to, ipc://PATH matches the Unix
// socket at PATH (ipc://@name the abstract one). An endpoint without a
// listener is absent from the map (the relay binds it itself); a listener
// that matches no endpoint, or a second listener for one endpoint, is an
// error naming both sides: the socket unit and relay.yaml disagree.
func Match(ctx context.Context, ls []Listener, endpoints []string) (map[string]int, error) {
	matched := map[string]int{}
	owner := map[string]Listener{} // for the error naming both
	var errs []error
	for _, l := range ls {
		ep, err := find(ctx, l, endpoints)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ep == "":
			errs = append(errs, fmt.Errorf("inherited %s matches no configured endpoint (%s): the socket unit and the relay's configuration disagree",
				l, strings.Join(endpoints, ", ")))
		case owner[ep].Addr != "":
			errs = append(errs, fmt.Errorf("inherited %s and %s both match endpoint %s", owner[ep], l, ep))
		default:
			matched[ep], owner[ep] = l.FD, l
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return matched, nil
}

// find returns the endpoint l serves, or "".
func find(ctx context.Context, l Listener, endpoints []string) (string, error) {
	for _, ep := range endpoints {
		ok, err := serves(ctx, l, ep)
		if err != nil {
			return "", fmt.Errorf("endpoint %s (for inherited %s): %w", ep, l, err)
		}
		if ok {
			return ep, nil
		}
	}
	return "", nil
}

func serves(ctx context.Context, l Listener, endpoint string) (bool, error) {
	scheme, rest, _ := strings.Cut(endpoint, "://")
	switch scheme {
	case "ipc":
		return l.unix && l.Addr == rest, nil
	case "tcp":
	default:
		return false, nil // inproc, pgm, ...: never inherited
	}
	if l.unix {
		return false, nil
	}
	got, err := netip.ParseAddrPort(l.Addr)
	if err != nil {
		return false, err
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return false, err
	}
	if p, err := strconv.Atoi(port); err != nil || p != int(got.Port()) {
		return false, nil
	}
	if host == "*" {
		return got.Addr().IsUnspecified(), nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap() == got.Addr().Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if a.Unmap() == got.Addr().Unmap() {
			return true, nil
		}
	}
	return false, nil
}
