package testutil

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// PeerScript is the path of zmqpeer.py, the pyzmq peer program.
func PeerScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "zmqpeer.py")
}

// Scenario describes one run of zmqpeer.py's scenario mode.
type Scenario struct {
	Inbound     string       `json:"inbound"`
	Outbound    string       `json:"outbound"`
	Subscribers int          `json:"subscribers"`
	Producers   [][][][]byte `json:"producers"` // producer -> message -> frame
	Idle        float64      `json:"idle"`      // seconds of silence that end collection
	Expect      int          `json:"expect"`    // messages per subscriber that end collection early (0: wait for silence)
}

// RunScenario runs the scenario through real pyzmq sockets and returns, per
// subscriber, the messages it received (probes excluded), in arrival order.
func RunScenario(t testing.TB, s Scenario) [][][][]byte {
	t.Helper()
	py := Python(t)
	in, err := json.Marshal(s) // [][]byte marshals as base64, as the script expects
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, PeerScript(), "scenario")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zmqpeer scenario: %v\n%s", err, stderr.String())
	}
	var res struct {
		Received [][][][]byte `json:"received"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("zmqpeer output %q: %v", out, err)
	}
	return res.Received
}
