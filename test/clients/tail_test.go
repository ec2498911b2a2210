package clients

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client"
	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
	"github.com/fedora-infra/fedmsg-relay/internal/envelope"
)

func TestTail(t *testing.T) {
	r := startRelay(t)
	conf := emptyConfigDir(t)
	writeFile(t, conf, "relay.py", fmt.Sprintf("config = dict(endpoints={'relay_outbound': [%q]})\n", r.Outbound))
	cases := []struct {
		name  string
		env   []string
		args  []string
		check func(line string) error
	}{
		{"json", nil, []string{"--relay-outbound", r.Outbound, "--json", "--count", "3"}, func(line string) error {
			var body struct {
				Topic string
				Msg   struct{ Log string }
			}
			if err := json.Unmarshal([]byte(line), &body); err != nil || !strings.HasPrefix(body.Msg.Log, "tail-") {
				return fmt.Errorf("not a JSON body with our log: %v", err)
			}
			return nil
		}},
		{"readable from config", []string{"FEDMSG_CONFIG=" + conf}, []string{"--count", "2"}, func(line string) error {
			topic, body, ok := strings.Cut(line, " ")
			if !ok || !strings.HasPrefix(topic, "org.fedoraproject.dev.") || !json.Valid([]byte(body)) {
				return fmt.Errorf("want TOPIC BODY")
			}
			return nil
		}},
		{"topic filter", nil, []string{"--relay-outbound", r.Outbound, "--topic", "org.fedoraproject.dev.wanted.", "--count", "2"}, func(line string) error {
			if !strings.HasPrefix(line, "org.fedoraproject.dev.wanted.log ") {
				return fmt.Errorf("topic not filtered")
			}
			return nil
		}},
	}
	b := &envelope.Builder{TopicPrefix: "org.fedoraproject", Environment: "dev", Username: "test"}
	for _, tc := range cases {
		// Log messages, alternating the modnames "other" and "wanted".
		lines := tailWhilePublishing(t, r, tc.env, tc.args, func(k int) (string, []byte) {
			topic, body, err := b.Build([]string{"other", "wanted"}[k%2], "log", json.RawMessage(fmt.Sprintf(`{"log": "tail-%d"}`, k)))
			if err != nil {
				t.Fatal(err)
			}
			return topic, body
		})
		for _, line := range lines {
			if err := tc.check(line); err != nil {
				t.Errorf("%s: line %q: %v", tc.name, line, err)
			}
		}
	}
}

// tailWhilePublishing runs fedmsg-tail with args (ending with "--count N")
// and extra environment, and publishes message k = 0, 1, ... to r until it
// exits (a SUB misses what is sent before its subscription arrives); it
// checks that N lines were printed and returns them.
func tailWhilePublishing(t *testing.T, r *relay, env, args []string, message func(k int) (string, []byte)) []string {
	t.Helper()
	cmd := exec.Command(bin("fedmsg-tail"), append(args, "--timeout", "30s")...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	conn, err := client.DialPublisher([]string{r.Inbound}, "", 5*time.Second, clienttest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for k := 0; ; k++ {
		if err := conn.Send(message(k)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("fedmsg-tail %v: %v\n%s", args, err, stderr.String())
			}
			lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
			if want := args[len(args)-1]; fmt.Sprint(len(lines)) != want {
				t.Errorf("fedmsg-tail %v: %d lines, want %s:\n%s", args, len(lines), want, stdout.String())
			}
			return lines
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestTailTimeout(t *testing.T) {
	r := startRelay(t)
	res := runCmd(t, "", nil, bin("fedmsg-tail"), "--relay-outbound", r.Outbound, "--count", "1", "--timeout", "300ms")
	if res.code != 1 || !strings.Contains(res.stderr, "timeout after 300ms: 0 message(s) seen on "+r.Outbound) {
		t.Errorf("exit %d, stderr %q; want 1 and a timeout message", res.code, res.stderr)
	}
	if res.elapsed > 3*time.Second {
		t.Errorf("took %s", res.elapsed)
	}
}
