package testutil

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Activated returns a command that receives files as systemd passes
// activated sockets: from fd 3 on, with LISTEN_FDS, LISTEN_FDNAMES and a
// LISTEN_PID naming the command's own process. The PID is only known after
// the fork, so a shell sets it and execs the command in its place, as
// systemd does between fork and exec.
func Activated(files []*os.File, names []string, name string, args ...string) *exec.Cmd {
	script := `LISTEN_PID=$$ && export LISTEN_PID && exec "$0" "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, name}, args...)...)
	cmd.ExtraFiles = files
	cmd.Env = append(os.Environ(),
		"LISTEN_FDS="+strconv.Itoa(len(files)),
		"LISTEN_FDNAMES="+strings.Join(names, ":"))
	return cmd
}

// ListeningFile opens a listening socket on network and addr, as a socket
// unit does, and returns it as a file to pass on, with its address. The
// file is closed when the test ends.
func ListeningFile(t testing.TB, network, addr string) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the file is a dup that stays open and listening
	var f *os.File
	switch l := ln.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		l.SetUnlinkOnClose(false)
		f, err = l.File()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, ln.Addr().String()
}
