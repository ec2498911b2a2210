package ansible

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// migrationReport is what testdata/migration_probe.py prints at the end.
type migrationReport struct {
	Sent             int              `json:"sent"`
	ReceivedAny      int              `json:"received_any"`
	ReceivedFollower int              `json:"received_follower"`
	LostAny          []int            `json:"lost_any"`
	LostFollower     []int            `json:"lost_follower"`
	Switches         []map[string]any `json:"switches"`
}

// migrate moves the relay from relayA to relayB with playbooks/migrate-relay.yml while
// a producer following the plain host's relay.py sends one message per 100 ms, and
// reports what arrived.
func (f *fixture) migrate(t *testing.T) {
	from, to := f.relayA, f.relayB
	f.writeInventory(t, to, from)
	// What the SOP says to run first; the new host has no relay package yet.
	f.play(t, "migrate-relay.yml", "--check", "--diff")
	if _, err := to.Exec("rpm", "-q", "fedmsg-relay"); err == nil {
		t.Fatal("check mode installed fedmsg-relay")
	}

	stopFile := filepath.Join(t.TempDir(), "stop")
	probe := exec.Command("/usr/bin/python3", "testdata/migration_probe.py", f.plain.Path("/etc/fedmsg.d/relay.py"),
		fmt.Sprintf("tcp://%s:%d", from.address, f.ports.outbound),
		fmt.Sprintf("tcp://%s:%d", to.address, f.ports.outbound), stopFile)
	var stderr strings.Builder
	probe.Stderr = &stderr
	stdout, err := probe.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	defer probe.Process.Kill() // a no-op once it has exited
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("migration probe did not start: %q %s", lines.Text(), stderr.String())
	}

	f.play(t, "migrate-relay.yml")
	if err := os.WriteFile(stopFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() {
		t.Fatalf("migration probe gave no report: %s", stderr.String())
	}
	if err := probe.Wait(); err != nil {
		t.Fatalf("migration probe: %v\n%s", err, stderr.String())
	}
	var r migrationReport
	if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
		t.Fatalf("migration probe report %q: %v", lines.Text(), err)
	}
	t.Logf("migration %s -> %s at one message per 100 ms: sent %d; received %d by a listener on both relays "+
		"(lost %v); %d by a listener following relay.py (lost %v); switches %v",
		from.Name, to.Name, r.Sent, r.ReceivedAny, r.LostAny, r.ReceivedFollower, r.LostFollower, r.Switches)

	if len(r.Switches) != 2 {
		t.Errorf("producer and listener switched %d times in total, want once each: %v", len(r.Switches), r.Switches)
	}
	if r.Sent == 0 || r.ReceivedAny == 0 {
		t.Errorf("nothing went through the relays: %+v", r)
	}
	if last := r.Sent; len(r.LostFollower) > 0 && r.LostFollower[len(r.LostFollower)-1] == last {
		t.Errorf("the last message sent (%d) did not reach the listener through the new relay", last)
	}

	// The socket unit too: while it listened, a connection would start the old relay again.
	for _, unit := range []string{"fedmsg-relay.service", "fedmsg-relay.socket"} {
		if state := unitState(from, unit); state != "disabled/inactive" {
			t.Errorf("old relay %s: %s is %s, want disabled/inactive", from.Name, unit, state)
		}
	}
	if _, user := relayProcess(t, to); user != "fedmsg" {
		t.Errorf("new relay runs as %q, want fedmsg", user)
	}
	for _, h := range []*testHost{f.plain, from, to} {
		want := fmt.Sprintf("tcp://%s:%d", to.address, f.ports.inbound)
		if got := readClientConfig(t, h)["relay_inbound"]; mustJSON(got) != mustJSON([]any{want}) {
			t.Errorf("%s: relay_inbound %v after the move, want [%s]", h.Name, got, want)
		}
	}
	t.Logf("new relay's counters after the move:\n%s", relayCounters(t, to, f.ports.metrics))
	f.sendThroughRelay(t, f.plain)

	report := f.play(t, "migrate-relay.yml")
	if changed := report.changedTasks(); len(changed) > 0 {
		t.Errorf("second migration run changed: %v", changed)
	}
}

// relayCounters returns the message counters of the relay on h from its metrics endpoint.
func relayCounters(t *testing.T, h *testHost, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/metrics", h.address, port))
	if err != nil {
		t.Fatalf("metrics of %s: %v", h.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics of %s: %v", h.Name, err)
	}
	var counters []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "fedmsg_relay_received_total") || strings.HasPrefix(line, "fedmsg_relay_relayed_total") ||
			(strings.HasPrefix(line, "fedmsg_relay_dropped_total") && !strings.HasSuffix(line, " 0")) {
			counters = append(counters, line)
		}
	}
	return strings.Join(counters, "\n")
}
