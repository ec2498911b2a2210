// Package endpoint opens the listening sockets of the relay's Go engines
// (inbound and outbound) for ZeroMQ endpoints, or adopts those systemd
// passed (socket activation), accepts on them and keeps the life of each
// connection accepted (Peer).
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Options say how endpoints are opened.
type Options struct {
	Inherited    map[string]int // endpoint -> listening socket passed by systemd
	IPv6         bool           // tcp://*:PORT listens on IPv6 too
	TCPKeepalive bool
}

// Listen opens ep (tcp://HOST:PORT, tcp://*:PORT, tcp://[::1]:PORT,
// ipc:///path), on the inherited listening socket if there is one.
func Listen(ep string, o Options) (net.Listener, error) {
	if fd, ok := o.Inherited[ep]; ok {
		f := os.NewFile(uintptr(fd), ep)
		l, err := net.FileListener(f) // a dup: systemd's descriptor stays ours to keep
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("adopt inherited fd %d for %s: %w", fd, ep, err)
		}
		return l, nil
	}
	lc := net.ListenConfig{KeepAlive: -1}
	if o.TCPKeepalive {
		lc.KeepAlive = 0 // the system's defaults, as libzmq's ZMQ_TCP_KEEPALIVE=1
	}
	network, addr, err := split(ep, o.IPv6)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		removeStaleSocket(addr)
	}
	l, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", ep, err)
	}
	return l, nil
}

// Accept hands every connection l accepts to start, until l is closed.
func Accept(l net.Listener, start func(net.Conn)) {
	for {
		nc, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // fd exhaustion and the like: do not spin
			continue
		}
		start(nc)
	}
}

// split maps a ZeroMQ endpoint to a Go network and address.
func split(ep string, ipv6 bool) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(ep, "ipc://"); ok {
		return "unix", path, nil
	}
	hostport, ok := strings.CutPrefix(ep, "tcp://")
	if !ok {
		return "", "", fmt.Errorf("bind %s: unsupported endpoint (want tcp:// or ipc://)", ep)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", "", fmt.Errorf("bind %s: %w", ep, err)
	}
	network = "tcp4"
	if ipv6 || strings.Contains(host, ":") {
		network = "tcp"
	}
	if host == "*" {
		host = ""
	}
	return network, net.JoinHostPort(host, port), nil
}

// removeStaleSocket removes a socket file left by an earlier run, as libzmq
// does before it binds an ipc:// endpoint; anything else is left to fail.
func removeStaleSocket(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
}
