// Package clienttest holds helpers the client-side tests share: finding the
// real tools they drive (Debian's python3 with pyzmq, git) and loggers that
// print only when a test fails.
package clienttest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Python is Debian's interpreter, whose python3-zmq is the reference libzmq peer.
const Python = "/usr/bin/python3"

// Require returns the path of tool, skipping the test when it is missing,
// except under CI=true where a missing tool is a failure.
func Require(t testing.TB, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		missing(t, tool+" not found")
	}
	return path
}

// RequirePython returns Python after checking that it imports zmq.
func RequirePython(t testing.TB) string {
	t.Helper()
	if out, err := exec.Command(Python, "-c", "import zmq").CombinedOutput(); err != nil {
		missing(t, Python+" with pyzmq unavailable (apt-get install python3-zmq): "+string(out))
	}
	return Python
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// Logger returns a logger whose output appears only if the test fails.
func Logger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   t.Name(),
		Level:  hclog.Debug,
		Output: testWriter{t},
	})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
