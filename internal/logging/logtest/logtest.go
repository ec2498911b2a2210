// Package logtest gives tests a logger that prints only when the test fails.
// It lives apart from logging so that the daemon does not link "testing".
package logtest

import (
	"bytes"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// ForTest returns a logger that keeps its output and prints it only if the
// test fails, so passing runs stay quiet.
func ForTest(t testing.TB) hclog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("log output:\n%s", buf.String())
			mu.Unlock()
		}
	})
	return hclog.New(&hclog.LoggerOptions{
		Name:   t.Name(),
		Level:  hclog.Trace,
		Output: lockedWriter{&mu, &buf},
	})
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}
