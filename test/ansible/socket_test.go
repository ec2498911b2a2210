package ansible

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// socketListens returns the addresses fedmsg-relay.socket listens on in h, sorted.
func socketListens(t *testing.T, h *testHost) []string {
	t.Helper()
	var listens []string
	for _, line := range strings.Split(h.MustExec("systemctl", "show", "fedmsg-relay.socket", "-p", "Listen"), "\n") {
		if addr, ok := strings.CutPrefix(line, "Listen="); ok {
			listens = append(listens, strings.TrimSuffix(addr, " (Stream)"))
		}
	}
	slices.Sort(listens)
	return listens
}

// portHolders says which of systemd (the socket unit) and the relay hold
// h's listening socket on port.
func portHolders(h *testHost, port int) (systemd, relay bool) {
	out, _ := h.Exec("ss", "-Hltnp", fmt.Sprintf("sport = :%d", port))
	return strings.Contains(out, `"systemd",pid=1,`), strings.Contains(out, `"fedmsg-relay",pid=`)
}

// unitState is a unit's is-enabled and is-active answers in h.
func unitState(h *testHost, unit string) string {
	enabled, _ := h.Exec("systemctl", "is-enabled", unit)
	active, _ := h.Exec("systemctl", "is-active", unit)
	return strings.TrimSpace(enabled) + "/" + strings.TrimSpace(active)
}

// checkSocketActivated checks that fedmsg-relay.socket is enabled, listens
// on exactly relay.yaml's ports (the role's drop-in reset the package's
// loopback defaults) and that the relay took them over from systemd.
func (f *fixture) checkSocketActivated(t *testing.T, relay *testHost, ports relayPorts) {
	t.Helper()
	if state := unitState(relay, "fedmsg-relay.socket"); state != "enabled/active" {
		t.Errorf("fedmsg-relay.socket is %s, want enabled/active", state)
	}
	var want []string
	for _, p := range []int{ports.inbound, ports.outbound, ports.confirm} {
		want = append(want, fmt.Sprintf("%s:%d", relay.address, p))
	}
	slices.Sort(want)
	if got := socketListens(t, relay); !slices.Equal(got, want) {
		t.Errorf("fedmsg-relay.socket listens on %v, want relay.yaml's %v", got, want)
	}
	for _, p := range []int{ports.inbound, ports.outbound} {
		if systemd, relayHolds := portHolders(relay, p); !systemd || !relayHolds {
			t.Errorf("port %d: held by systemd %v, by the relay %v; want both", p, systemd, relayHolds)
		}
	}
}

// socketActivation drives the role's socket unit on the converged relay
// host: a changed port restarts the socket unit and then the relay (once),
// on the new port; fedmsg_relay_socket_activation=false masks and stops the
// socket and the relay binds its ports itself (a second such run changes
// nothing); turning it on again restores the socket. Messages go through after each step.
func (f *fixture) socketActivation(t *testing.T, relay *testHost) {
	f.checkSocketActivated(t, relay, f.ports)

	moved := f.ports
	moved.outbound = freePorts(t, 1, relay.address)[0]
	startsBefore := relayStarts(t, relay)
	report := f.play(t, "site.yml", "-e", fmt.Sprintf(`{"fedmsg_relay_outbound_port": %d}`, moved.outbound))
	if starts := relayStarts(t, relay) - startsBefore; starts != 1 {
		t.Errorf("a port change started fedmsg-relay %d times, want exactly 1", starts)
	}
	changed := report.changedTasks()
	for _, task := range []string{"Write the socket unit's ports", "Stop fedmsg-relay and its sockets", "Restart fedmsg-relay"} {
		if !slices.ContainsFunc(changed, func(c string) bool { return strings.Contains(c, task) }) {
			t.Errorf("a port change: changed tasks %v, want %q among them", changed, task)
		}
	}
	f.checkSocketActivated(t, relay, moved)
	f.sendThroughRelay(t, f.plain)

	f.play(t, "site.yml", "-e", `{"fedmsg_relay_socket_activation": false}`)
	if state := unitState(relay, "fedmsg-relay.socket"); state != "masked/inactive" {
		t.Errorf("socket activation off: fedmsg-relay.socket is %s, want masked/inactive", state)
	}
	if systemd, relayHolds := portHolders(relay, f.ports.inbound); systemd || !relayHolds {
		t.Errorf("socket activation off: port %d held by systemd %v, by the relay %v; want the relay alone", f.ports.inbound, systemd, relayHolds)
	}
	f.sendThroughRelay(t, f.plain)
	if changed := f.play(t, "site.yml", "-e", `{"fedmsg_relay_socket_activation": false}`).changedTasks(); len(changed) > 0 {
		t.Errorf("socket activation off, second run changed: %v", changed)
	}

	f.play(t, "site.yml")
	f.checkSocketActivated(t, relay, f.ports)
	f.sendThroughRelay(t, f.plain)
}
