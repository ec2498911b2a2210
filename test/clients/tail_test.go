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
	for _, tc := range cases {
		cmd := exec.Command(bin("fedmsg-tail"), append(tc.args, "--timeout", "20s")...)
		cmd.Env = append(os.Environ(), tc.env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Publish until tail has its count: a SUB misses what is sent before
		// its subscription reaches the relay.
		if err := publishUntil(t, r, done); err != nil {
			t.Fatalf("%s: fedmsg-tail: %v; stderr %s", tc.name, err, stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
		if want := tc.args[len(tc.args)-1]; fmt.Sprint(len(lines)) != want {
			t.Errorf("%s: %d lines, want %s:\n%s", tc.name, len(lines), want, stdout.String())
		}
		for _, line := range lines {
			if err := tc.check(line); err != nil {
				t.Errorf("%s: line %q: %v", tc.name, line, err)
			}
		}
	}
}

// publishUntil sends log messages, alternating the modnames "other" and
// "wanted", until done yields fedmsg-tail's exit.
func publishUntil(t *testing.T, r *relay, done <-chan error) error {
	t.Helper()
	conn, err := client.DialPublisher([]string{r.Inbound}, "", 5*time.Second, clienttest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := &envelope.Builder{TopicPrefix: "org.fedoraproject", Environment: "dev", Username: "test"}
	for k := 0; ; k++ {
		modname := []string{"other", "wanted"}[k%2]
		topic, body, err := b.Build(modname, "log", json.RawMessage(fmt.Sprintf(`{"log": "tail-%d"}`, k)))
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Send(topic, body); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Millisecond):
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
