package testutil

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test after timeout: waits
// on a loaded machine are conditions, never fixed sleeps.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
