package ansible

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// TestFirewalld runs the relay role on a host with its own network namespace
// and a running firewalld: the rich rules open each relay port to its source
// networks, changing a port closes the old port's rules (at runtime and in the
// permanent configuration), and a repeated run changes nothing.
func TestFirewalld(t *testing.T) {
	host.NeedTools(t, "ansible-playbook", "createrepo_c", "rpm", "rpmbuild")
	repo := localRepo(t, relayRPMs(t))
	h := bootHost(t, "ans-firewall", "127.0.0.1", repo, host.WithPrivateNetwork())
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := h.Exec("firewall-cmd", "--state")
		if err == nil && strings.TrimSpace(out) == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("firewalld is not running: %s %v", out, err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	dir := t.TempDir()
	inventory := filepath.Join(dir, "hosts")
	if err := os.WriteFile(inventory, []byte(fmt.Sprintf(`[fedmsg_relays]
%s ansible_nsenter_pid=%d fedmsg_relay_bind_address=127.0.0.1
[all:vars]
ansible_connection=community.docker.nsenter
ansible_python_interpreter=/usr/bin/python3
ansible_become=false
fedmsg_relay_outbound_port=4001
fedmsg_relay_confirm_port=0
fedmsg_relay_firewall_inbound_sources=["10.0.0.0/8", "fd00::/8"]
fedmsg_relay_firewall_outbound_sources=["192.0.2.0/24"]
`, h.Name, h.Pid())), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir}
	rule := func(source string, port int) string {
		family := "ipv4"
		if strings.Contains(source, ":") {
			family = "ipv6"
		}
		return fmt.Sprintf(`rule family="%s" source address="%s" port port="%d" protocol="tcp" accept`, family, source, port)
	}
	wantRules := func(t *testing.T, inbound int) {
		t.Helper()
		want := []string{rule("10.0.0.0/8", inbound), rule("fd00::/8", inbound), rule("192.0.2.0/24", 4001)}
		slices.Sort(want)
		for _, where := range []string{"runtime", "permanent"} {
			args := []string{"firewall-cmd", "--list-rich-rules"}
			if where == "permanent" {
				args = append(args, "--permanent")
			}
			got := strings.Split(strings.TrimSpace(h.MustExec(args...)), "\n")
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s rich rules:\n%s\nwant:\n%s", where, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
	}

	f.play(t, "relay.yml", "-e", `{"fedmsg_relay_inbound_ports": [2003]}`)
	wantRules(t, 2003)
	f.play(t, "relay.yml", "-e", `{"fedmsg_relay_inbound_ports": [2013]}`)
	wantRules(t, 2013)
	if changed := f.play(t, "relay.yml", "-e", `{"fedmsg_relay_inbound_ports": [2013]}`).changedTasks(); len(changed) > 0 {
		t.Errorf("a repeated run changed: %v", changed)
	}
}
