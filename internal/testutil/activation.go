package testutil

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
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
