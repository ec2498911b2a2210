package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// A socket unit that disagrees with relay.yaml stops the relay at start with
// one error naming the inherited socket and the configured endpoints.
func TestSocketActivationMismatchIsAStartError(t *testing.T) {
	f, addr := testutil.ListeningFile(t, "tcp4", "127.0.0.1:0")
	in := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	out := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	cfg := testutil.WriteFile(t, "relay.yaml", fmt.Sprintf("relay_inbound: %s\nrelay_outbound: %s\n", in, out))
	cmd := testutil.Activated([]*os.File{f}, []string{"fedmsg-relay-inbound"}, relayBinary(t), "--config", cfg)
	got, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
		t.Fatalf("exit %d (%v), want 1:\n%s", code, err, got)
	}
	for _, want := range []string{"socket activation", "fd 3 (fedmsg-relay-inbound, " + addr + ")", in, out} {
		if !strings.Contains(string(got), want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
