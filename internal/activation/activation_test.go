package activation

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// The test binary doubles as the activated child: with childEnv set it
// adopts what it inherited, matches it to the endpoints in that variable and
// prints the result, as the relay would at start.
const childEnv = "ACTIVATION_TEST_ENDPOINTS"

func TestMain(m *testing.M) {
	if eps, ok := os.LookupEnv(childEnv); ok {
		os.Exit(child(strings.Fields(eps)))
	}
	os.Exit(m.Run())
}

func child(endpoints []string) int {
	ls, err := Listeners()
	if err == nil {
		var matched map[string]int
		if matched, err = Match(context.Background(), ls, endpoints); err == nil {
			leaked := os.Getenv("LISTEN_FDS") + os.Getenv("LISTEN_PID")
			out, _ := json.Marshal(map[string]any{"matched": matched, "listeners": len(ls), "env_left": leaked})
			fmt.Println(string(out))
			return 0
		}
	}
	fmt.Println("error:", err)
	return 1
}

type result struct {
	Matched   map[string]int `json:"matched"`
	Listeners int            `json:"listeners"`
	EnvLeft   string         `json:"env_left"`
}

// runChild starts the test binary with files passed as systemd passes them.
func runChild(t *testing.T, files []*os.File, names, endpoints []string, pidOverride string) (result, string, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := testutil.Activated(files, names, self)
	cmd.Env = append(cmd.Env, childEnv+"="+strings.Join(endpoints, " "))
	if pidOverride != "" {
		// Replace the shell's LISTEN_PID: a variable meant for another process.
		cmd.Args[2] = `exec "$0" "$@"`
		cmd.Env = append(cmd.Env, "LISTEN_PID="+pidOverride)
	}
	out, err := cmd.Output()
	var r result
	if err == nil {
		if jerr := json.Unmarshal(out, &r); jerr != nil {
			t.Fatalf("child output %q: %v", out, jerr)
		}
	}
	return r, string(out), err
}

func port(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAdoptsAndMatches(t *testing.T) {
	loop, loopAddr := testutil.ListeningFile(t, "tcp4", "127.0.0.1:0")
	any4, any4Addr := testutil.ListeningFile(t, "tcp4", "0.0.0.0:0")
	named, namedAddr := testutil.ListeningFile(t, "tcp4", "127.0.0.1:0")
	path := filepath.Join(t.TempDir(), "relay.sock")
	ipc, _ := testutil.ListeningFile(t, "unix", path)
	abstract, _ := testutil.ListeningFile(t, "unix", "@fedmsg-relay-activation-"+port(t, loopAddr))

	endpoints := []string{
		"tcp://127.0.0.1:" + port(t, loopAddr),
		"tcp://*:" + port(t, any4Addr),
		"tcp://localhost:" + port(t, namedAddr),
		"ipc://" + path,
		"ipc://@fedmsg-relay-activation-" + port(t, loopAddr),
		"tcp://127.0.0.1:1", // configured but not activated: the relay binds it
	}
	files := []*os.File{loop, any4, named, ipc, abstract}
	r, out, err := runChild(t, files, []string{"inbound", "outbound", "confirm", "ipc", "abstract"}, endpoints, "")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := map[string]int{endpoints[0]: 3, endpoints[1]: 4, endpoints[2]: 5, endpoints[3]: 6, endpoints[4]: 7}
	if fmt.Sprint(r.Matched) != fmt.Sprint(want) || r.Listeners != len(files) {
		t.Errorf("matched %v of %d listeners, want %v of %d", r.Matched, r.Listeners, want, len(files))
	}
	if r.EnvLeft != "" {
		t.Errorf("LISTEN_* still set after adoption: %q", r.EnvLeft)
	}
}

func TestWildcardMatchesIPv6Any(t *testing.T) {
	any6, addr := testutil.ListeningFile(t, "tcp6", "[::]:0")
	ep := "tcp://*:" + port(t, addr)
	r, out, err := runChild(t, []*os.File{any6}, nil, []string{ep}, "")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if r.Matched[ep] != 3 {
		t.Errorf("matched %v, want %s on fd 3", r.Matched, ep)
	}
}

func TestMismatchNamesBothSides(t *testing.T) {
	ln, addr := testutil.ListeningFile(t, "tcp4", "127.0.0.1:0")
	other := testutil.FreePort(t)
	cases := []struct {
		name      string
		endpoints []string
		want      []string
	}{
		{"other port", []string{fmt.Sprintf("tcp://127.0.0.1:%d", other)},
			[]string{"fd 3 (inbound, " + addr + ")", fmt.Sprintf("tcp://127.0.0.1:%d", other), "disagree"}},
		{"other host", []string{"tcp://127.0.0.2:" + port(t, addr)},
			[]string{"fd 3 (inbound, " + addr + ")", "tcp://127.0.0.2:" + port(t, addr)}},
		{"wildcard is not loopback", []string{"tcp://*:" + port(t, addr)},
			[]string{"fd 3 (inbound, " + addr + ")", "tcp://*:" + port(t, addr)}},
	}
	for _, c := range cases {
		_, out, err := runChild(t, []*os.File{ln}, []string{"inbound"}, c.endpoints, "")
		if err == nil {
			t.Errorf("%s: endpoints %v: child accepted the socket: %s", c.name, c.endpoints, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: endpoints %v: error %q lacks %q", c.name, c.endpoints, out, w)
			}
		}
	}
}

func TestNotAListeningSocket(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f, err := conn.(*net.UDPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, out, err := runChild(t, []*os.File{f}, []string{"udp"}, []string{"tcp://127.0.0.1:1"}, "")
	if err == nil || !strings.Contains(out, "fd 3 (udp)") || !strings.Contains(out, "not a stream socket") {
		t.Errorf("a UDP socket was not refused clearly: %v %s", err, out)
	}
}

func TestOtherProcessesSockets(t *testing.T) {
	ln, addr := testutil.ListeningFile(t, "tcp4", "127.0.0.1:0")
	// LISTEN_PID names another process: nothing is adopted, the relay binds.
	r, out, err := runChild(t, []*os.File{ln}, nil, []string{"tcp://127.0.0.1:" + port(t, addr)}, "1")
	if err != nil || r.Listeners != 0 || len(r.Matched) != 0 {
		t.Errorf("adopted sockets meant for pid 1: %v %s", err, out)
	}
}

func TestNoActivation(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	ls, err := Listeners()
	if err != nil || len(ls) != 0 {
		t.Errorf("without LISTEN_FDS: %v, %v", ls, err)
	}
}
