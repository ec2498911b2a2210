package ansible

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestOnePortList keeps the relay's ports in one list: the fedmsg_relay role's defaults
// (Fedora's production ports), the SOP's port table and the port labels of the SELinux
// module must name the same ports, and none of them may be 9940, fedmsg-gateway's port on
// busgateway01.
func TestOnePortList(t *testing.T) {
	var defaults struct {
		Inbound []int  `yaml:"fedmsg_relay_inbound_ports"`
		Out     int    `yaml:"fedmsg_relay_outbound_port"`
		Confirm int    `yaml:"fedmsg_relay_confirm_port"`
		Metrics string `yaml:"fedmsg_relay_metrics_address"`
	}
	readYAML(t, filepath.Join(ansibleDir, "roles/fedmsg_relay/defaults/main.yml"), &defaults)
	metrics, err := strconv.Atoi(defaults.Metrics[strings.LastIndex(defaults.Metrics, ":")+1:])
	if err != nil {
		t.Fatalf("fedmsg_relay_metrics_address %q: %v", defaults.Metrics, err)
	}
	role := sortedPorts(append(slices.Clone(defaults.Inbound), defaults.Out, defaults.Confirm, metrics))

	sop, err := os.ReadFile(filepath.Join(repoRoot, "docs/sop.md"))
	if err != nil {
		t.Fatal(err)
	}
	cil, err := os.ReadFile(filepath.Join(repoRoot, "selinux/fedmsg_relay_ports.cil"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		name  string
		ports []int
	}{
		{"the SOP's port table (docs/sop.md)", matchedPorts(`(?m)^\| (\d+)/tcp \|`, sop)},
		{"selinux/fedmsg_relay_ports.cil", matchedPorts(`\(portcon tcp (\d+) `, cil)},
	} {
		if !slices.Equal(src.ports, role) {
			t.Errorf("%s lists ports %v, the fedmsg_relay role's defaults %v", src.name, src.ports, role)
		}
	}
	if slices.Contains(role, 9940) {
		t.Errorf("the relay's ports %v include 9940, fedmsg-gateway's port on busgateway01", role)
	}
}

func matchedPorts(pattern string, text []byte) []int {
	var ports []int
	for _, m := range regexp.MustCompile(pattern).FindAllSubmatch(text, -1) {
		port, _ := strconv.Atoi(string(m[1]))
		ports = append(ports, port)
	}
	return sortedPorts(ports)
}

func sortedPorts(ports []int) []int {
	slices.Sort(ports)
	return slices.Compact(ports)
}
