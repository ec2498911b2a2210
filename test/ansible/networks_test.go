package ansible

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// TestRelayPyFromAnotherTree applies role fedmsg_base from a playbook outside this
// repository's playbooks/ (no group_vars of ours), as an existing Ansible tree would, and
// reads the relay.py each host gets: endpoints derived from the relay host's
// fedmsg_relay_client_networks and the fedmsg_relay role's default ports, the host's own
// network first, one listener endpoint.
func TestRelayPyFromAnotherTree(t *testing.T) {
	host.NeedTools(t, "ansible-playbook", "/usr/bin/python3")
	dir := t.TempDir()
	networks := `[{"name": "iad2", "address": "bus.iad2.example", "inbound_ports": [9941]}, ` +
		`{"name": "vpn", "address": "bus.vpn.example", "inbound_ports": [3998]}]`
	hosts := map[string]string{"iad2_host": "", "vpn_host": "vpn", "other_host": "elsewhere"}
	var b strings.Builder
	fmt.Fprintf(&b, "all:\n  vars: {ansible_connection: local, ansible_python_interpreter: /usr/bin/python3}\n")
	fmt.Fprintf(&b, "  children:\n    fedmsg_relays:\n      hosts:\n        relay01: {fedmsg_relay_client_networks: %s}\n", networks)
	fmt.Fprintf(&b, "    clients:\n      hosts:\n")
	for name, network := range hosts {
		fmt.Fprintf(&b, "        %s: {fedmsg_base_network: %q, fedmsg_base_environment: prod, fedmsg_base_config_dir: %q}\n",
			name, network, filepath.Join(dir, name))
	}
	inventory := filepath.Join(dir, "hosts.yml")
	playbook := filepath.Join(dir, "fedmsg.yml")
	abs, err := filepath.Abs(filepath.Join(ansibleDir, "roles"))
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]string{
		inventory: b.String(),
		playbook:  "- name: Point the clients at the relay\n  hosts: clients\n  gather_facts: false\n  roles:\n    - role: fedmsg_base\n",
	} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("ansible-playbook", "-i", inventory, playbook)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ANSIBLE_ROLES_PATH="+abs, "ANSIBLE_NOCOLOR=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ansible-playbook: %v\n%s", err, out)
	}

	iad2First := []string{"tcp://bus.iad2.example:9941", "tcp://bus.vpn.example:3998"}
	want := map[string]struct{ inbound, outbound, confirm []string }{
		"iad2_host":  {iad2First, []string{"tcp://bus.iad2.example:3999"}, []string{"tcp://bus.iad2.example:9942"}},
		"other_host": {iad2First, []string{"tcp://bus.iad2.example:3999"}, []string{"tcp://bus.iad2.example:9942"}},
		"vpn_host": {[]string{"tcp://bus.vpn.example:3998", "tcp://bus.iad2.example:9941"},
			[]string{"tcp://bus.vpn.example:3999"}, []string{"tcp://bus.vpn.example:9942"}},
	}
	for name, w := range want {
		var config struct {
			Inbound   []string            `json:"relay_inbound"`
			Confirm   []string            `json:"relay_inbound_confirm"`
			Endpoints map[string][]string `json:"endpoints"`
		}
		readRelayPy(t, filepath.Join(dir, name, "relay.py"), &config)
		got := fmt.Sprint(config.Inbound, config.Endpoints["relay_outbound"], config.Confirm)
		if exp := fmt.Sprint(w.inbound, w.outbound, w.confirm); got != exp {
			t.Errorf("%s (fedmsg_base_network %q): relay_inbound, relay_outbound, relay_inbound_confirm = %s, want %s",
				name, hosts[name], got, exp)
		}
	}
}
