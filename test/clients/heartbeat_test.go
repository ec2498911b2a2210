package clients

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestLoggerIdleBetweenMessages is `tail -f log | fedmsg-logger`: the logger
// waits on its input longer than the relay's heartbeat timeout (3 intervals)
// and must still deliver the next line on the same connection.
func TestLoggerIdleBetweenMessages(t *testing.T) {
	// Short enough to cut an unanswering logger off within the pause, long
	// enough that a loaded machine answers in time.
	const ivl = 500 * time.Millisecond
	r := startRelay(t, "heartbeat_interval: 500ms")
	sub := subscribe(t, r)
	for _, confirm := range []bool{true, false} {
		args := []string{"--relay", r.Inbound}
		if confirm {
			args = []string{"--confirm", "--relay-confirm", r.Confirm}
		}
		cmd := exec.Command(bin("fedmsg-logger"), append(args, "--timeout", "10s")...)
		cmd.Env = append(os.Environ(), "FEDMSG_CONFIG="+emptyConfigDir(t))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

		io.WriteString(stdin, "before the pause\n")
		if m := sub.next(10 * time.Second); !strings.Contains(m.Body, `"before the pause"`) {
			t.Fatalf("confirm=%v: got %s", confirm, m.Body)
		}
		time.Sleep(5 * ivl) // the idle period under test, not a wait for a result
		io.WriteString(stdin, "after the pause\n")
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("confirm=%v: %v\n%s", confirm, err, stderr.String())
		}
		if m := sub.next(10 * time.Second); !strings.Contains(m.Body, `"after the pause"`) {
			t.Errorf("confirm=%v: got %s", confirm, m.Body)
		}
		// The connection lived through the pause: the logger answered the
		// relay's pings instead of being cut off and dialling again.
		if strings.Contains(stderr.String(), "dialling again") {
			t.Errorf("confirm=%v: the relay cut the idle logger off:\n%s", confirm, stderr.String())
		}
	}
}
