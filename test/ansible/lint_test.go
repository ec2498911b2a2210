// Package ansible proves the Ansible roles and playbooks under ansible/: static checks
// (ansible-lint, yamllint, syntax, argument specs) and real runs against throw-away
// systemd hosts (run_test.go).
package ansible

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// ansibleDir is the Ansible tree, relative to this package.
const ansibleDir = "../../ansible"

var (
	roles       = []string{"fedmsg_relay", "fedmsg_base"}
	playbooks   = []string{"site.yml", "relay.yml", "migrate-relay.yml"}
	inventories = []string{"production", "staging"}
)

// ansibleCmd runs an Ansible tool from ansible/ with its ansible.cfg and no colour.
func ansibleCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = ansibleDir
	abs, _ := filepath.Abs(filepath.Join(ansibleDir, "ansible.cfg"))
	cmd.Env = append(os.Environ(), "ANSIBLE_CONFIG="+abs, "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0",
		"NO_COLOR=1", "PY_COLORS=0")
	return cmd
}

func TestAnsibleLint(t *testing.T) {
	host.NeedTools(t, "ansible-lint")
	// Profile, offline mode and strictness come from ansible/.ansible-lint; --offline again
	// so that a changed config cannot make CI reach for Galaxy.
	out, err := ansibleCmd("ansible-lint", "--offline", "--nocolor").CombinedOutput()
	if err != nil {
		t.Fatalf("ansible-lint: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Passed with production profile") {
		t.Errorf("ansible-lint did not report passing the production profile:\n%s", out)
	}
}

func TestYamllint(t *testing.T) {
	host.NeedTools(t, "yamllint")
	if out, err := ansibleCmd("yamllint", "--strict", "-c", ".yamllint", ".").CombinedOutput(); err != nil {
		t.Fatalf("yamllint: %v\n%s", err, out)
	}
}

func TestSyntaxCheck(t *testing.T) {
	host.NeedTools(t, "ansible-playbook")
	for _, inv := range inventories {
		for _, pb := range playbooks {
			out, err := ansibleCmd("ansible-playbook", "--syntax-check", "-i", "inventory/"+inv,
				"playbooks/"+pb).CombinedOutput()
			if err != nil {
				t.Errorf("syntax-check %s with inventory %s: %v\n%s", pb, inv, err, out)
			}
			// An unparsable inventory is only a warning to Ansible.
			if strings.Contains(string(out), "Unable to parse") {
				t.Errorf("inventory %s not parsed:\n%s", inv, out)
			}
		}
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestArgumentSpecsMatchDefaults keeps each role's meta/argument_specs.yml, the
// documentation of its variables, in step with defaults/main.yml: same names, same
// default values, every name prefixed with the role name, internal vars "_"-prefixed.
func TestArgumentSpecsMatchDefaults(t *testing.T) {
	for _, role := range roles {
		dir := filepath.Join(ansibleDir, "roles", role)
		var defaults map[string]any
		readYAML(t, filepath.Join(dir, "defaults/main.yml"), &defaults)
		var specs struct {
			ArgumentSpecs map[string]struct {
				Options map[string]struct {
					Default     any `yaml:"default"`
					Description any `yaml:"description"`
					Type        string
				}
			} `yaml:"argument_specs"`
		}
		readYAML(t, filepath.Join(dir, "meta/argument_specs.yml"), &specs)
		options := specs.ArgumentSpecs["main"].Options

		if got, want := sortedKeys(options), sortedKeys(defaults); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: argument_specs options %v\ndiffer from defaults %v", role, got, want)
		}
		for name, opt := range options {
			if !strings.HasPrefix(name, role+"_") {
				t.Errorf("%s: variable %s lacks the prefix %s_", role, name, role)
			}
			if opt.Description == nil || opt.Type == "" {
				t.Errorf("%s: %s needs a description and a type", role, name)
			}
			if def, ok := defaults[name]; ok && !reflect.DeepEqual(opt.Default, def) {
				t.Errorf("%s: %s defaults to %#v in argument_specs but %#v in defaults/main.yml",
					role, name, opt.Default, def)
			}
		}

		var internal map[string]any
		readYAML(t, filepath.Join(dir, "vars/main.yml"), &internal)
		for name := range internal {
			if !strings.HasPrefix(name, "_"+role+"_") {
				t.Errorf("%s: internal variable %s in vars/main.yml lacks the prefix _%s_", role, name, role)
			}
		}
	}
}

// TestVariableValidation runs the roles' validation (argument specs and assert tasks,
// the only tasks tagged "always") and checks that bad variables fail early with a message
// naming the problem, and that the defaults pass. Each case is an alias of localhost with
// its variables as host vars, so one ansible-playbook run covers them all.
func TestVariableValidation(t *testing.T) {
	host.NeedTools(t, "ansible-playbook")
	tests := []struct {
		name    string
		relay   bool           // in fedmsg_relays (relay role) or a plain host (base role only)
		vars    map[string]any // host vars
		wantErr string         // "" = must pass
	}{
		{"relay_defaults", true, nil, ""},
		{"base_defaults", false, nil, ""},
		{"vpn_host_in_production", false, map[string]any{"fedmsg_base_environment": "prod", "fedmsg_base_network": "vpn"}, ""},
		{"loopback_in_production", false,
			map[string]any{"fedmsg_base_environment": "prod", "fedmsg_base_relay_inbound": []string{"tcp://127.0.0.1:9941"}},
			"loopback_in_production is not in group fedmsg_relays but its relay_inbound ['tcp://127.0.0.1:9941'] is loopback"},
		{"unknown_state", true, map[string]any{"fedmsg_relay_state": "paused"},
			"value of fedmsg_relay_state must be one of: started, stopped"},
		{"port_as_text", true, map[string]any{"fedmsg_relay_outbound_port": "many"},
			"argument 'fedmsg_relay_outbound_port' is of type"},
		{"same_port_twice", true, map[string]any{"fedmsg_relay_inbound_ports": []int{2003}, "fedmsg_relay_confirm_port": 2003},
			"must be distinct ports in 1-65535; got [2003, 2003, 3999, 9943]"},
		{"client_network_on_a_port_not_bound", true,
			map[string]any{"fedmsg_relay_client_networks": []map[string]any{{"name": "vpn", "address": "a.example", "inbound_ports": []int{3997}}}},
			"inbound_ports (if given) among fedmsg_relay_inbound_ports [9941, 3998]"},
		{"nrpe_checks_without_the_status_socket", true,
			map[string]any{"fedmsg_relay_nrpe_checks": true, "fedmsg_relay_monitoring_endpoint": ""},
			"fedmsg_relay_nrpe_checks needs fedmsg_relay_monitoring_endpoint"},
		{"no_inbound_port", true, map[string]any{"fedmsg_relay_inbound_ports": []int{}},
			"fedmsg_relay_inbound_ports (at least one)"},
		{"port_out_of_range", true, map[string]any{"fedmsg_relay_outbound_port": 70000},
			"must be distinct ports in 1-65535"},
		{"host_name_as_bind_address", true, map[string]any{"fedmsg_relay_bind_address": "busgateway01"},
			"does not resolve host names when binding"},
		{"log_outside_the_units_log_dir", true, map[string]any{"fedmsg_relay_log_file": "/tmp/relay.log"},
			"the only log directory fedmsg-relay.service may write"},
		{"monitoring_socket_where_the_unit_cannot_write", true,
			map[string]any{"fedmsg_relay_monitoring_endpoint": "ipc:///var/lib/relay.sock"},
			"fedmsg_relay_monitoring_endpoint empty"},
		{"extra_config_overrides_a_managed_key", true,
			map[string]any{"fedmsg_relay_config_extra": map[string]any{"relay_inbound": "tcp://*:1"}},
			"fedmsg_relay_config_extra must not set ['relay_inbound']"},
		{"extra_config_sets_the_bridge", true,
			map[string]any{"fedmsg_relay_config_extra": map[string]any{"amqp": map[string]any{"url": "amqp://broker"}}},
			"fedmsg_relay_config_extra must not set ['amqp']; use the matching fedmsg_relay_* variable"},
		{"wildcard_client_endpoint", false, map[string]any{"fedmsg_base_relay_outbound": []string{"tcp://*:3999"}},
			"clients connect) or ipc:///PATH; offending: ['tcp://*:3999']"},
		{"unknown_environment", false, map[string]any{"fedmsg_base_environment": "production"},
			"value of fedmsg_base_environment must be one of"},
	}
	// A YAML inventory with each host's vars as a JSON flow mapping, in table order:
	// relay_defaults is the first relay, from whose variables (the role defaults, as the
	// relay host sets none) every plain host's relay.py derives, with production networks.
	var relays, plain strings.Builder
	for _, tt := range tests {
		vars, err := json.Marshal(tt.vars)
		if err != nil {
			t.Fatal(err)
		}
		group := &plain
		if tt.relay {
			group = &relays
		}
		fmt.Fprintf(group, "        %s: %s\n", tt.name, vars)
	}
	path := filepath.Join(t.TempDir(), "hosts.yml")
	inventory := "all:\n  vars: {ansible_connection: local, ansible_python_interpreter: /usr/bin/python3}\n" +
		"  children:\n    fedmsg_relays:\n      hosts:\n" + relays.String() +
		"    fedmsg_hosts:\n      children: {fedmsg_relays: {}}\n      hosts:\n" + plain.String()
	if err := os.WriteFile(path, []byte(inventory), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := ansibleCmd("ansible-playbook", "-i", path, "--check", "--tags", "no_such_tag", "playbooks/site.yml")
	cmd.Env = append(cmd.Env, "ANSIBLE_GATHERING=explicit", "ANSIBLE_STDOUT_CALLBACK=json")
	out, _ := cmd.Output() // failures are expected; the report says which host failed how
	failures, err := hostFailures(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, tt := range tests {
		msg, failed := failures[tt.name]
		switch {
		case tt.wantErr == "" && failed:
			t.Errorf("%s (vars %v) failed: %s", tt.name, tt.vars, msg)
		case tt.wantErr != "" && !failed:
			t.Errorf("%s (vars %v) passed, want failure %q", tt.name, tt.vars, tt.wantErr)
		case tt.wantErr != "" && !strings.Contains(msg, tt.wantErr):
			t.Errorf("%s (vars %v): failure %q lacks %q", tt.name, tt.vars, msg, tt.wantErr)
		}
	}
}

// TestSELinuxPolicyPorts keeps fedmsg_relay_selinux_policy_ports (ports the role leaves
// to the policy) in step with the port labels of the fedmsg-relay-selinux module and the
// upstream ports its .te lets the relay bind under their base-policy types.
func TestSELinuxPolicyPorts(t *testing.T) {
	cil, err := os.ReadFile(filepath.Join(repoRoot, "selinux/fedmsg_relay_ports.cil"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]bool{}
	for _, m := range regexp.MustCompile(`\(portcon tcp (\d+) `).FindAllStringSubmatch(string(cil), -1) {
		port, _ := strconv.Atoi(m[1])
		want[port] = true
	}
	te, err := os.ReadFile(filepath.Join(repoRoot, "selinux/fedmsg_relay.te"))
	if err != nil {
		t.Fatal(err)
	}
	// Upstream's loopback defaults keep their base-policy types, which the .te binds.
	for port, iface := range map[int]string{2003: "corenet_tcp_bind_lmtp_port", 4001: "corenet_tcp_bind_kubernetes_port"} {
		if strings.Contains(string(te), iface+"(fedmsg_relay_t)") {
			want[port] = true
		}
	}
	var defaults struct {
		Ports []int `yaml:"fedmsg_relay_selinux_policy_ports"`
	}
	readYAML(t, filepath.Join(ansibleDir, "roles/fedmsg_relay/defaults/main.yml"), &defaults)
	got := map[int]bool{}
	for _, p := range defaults.Ports {
		got[p] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fedmsg_relay_selinux_policy_ports = %v, but the SELinux module lets the relay bind %v",
			sortedKeys(intKeys(got)), sortedKeys(intKeys(want)))
	}
}

func intKeys(m map[int]bool) map[string]bool {
	s := map[string]bool{}
	for k := range m {
		s[strconv.Itoa(k)] = true
	}
	return s
}
