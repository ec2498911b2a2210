package packagetest

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/test/host"
	"github.com/fedora-infra/fedmsg-relay/test/restart"
)

// packagedRelay is the installed relay on a booted host as a restart.Target:
// restarted with the SOP's command, and at the last restart upgraded to a
// rebuilt package, whose %postun restarts it. It listens on the packaged
// relay.yaml's loopback ports, held by the packaged fedmsg-relay.socket.
type packagedRelay struct {
	h        *host.Host
	upgrade  []string // the rebuilt RPMs, inside the host
	restarts int
	pids     []string // MainPID before and after the upgrade
}

func (r *packagedRelay) Name() string     { return "fedmsg-relay on " + r.h.Name }
func (r *packagedRelay) Inbound() string  { return "tcp://127.0.0.1:2003" }
func (r *packagedRelay) Outbound() string { return "tcp://127.0.0.1:4001" }
func (r *packagedRelay) Confirm() string  { return "" }

func (r *packagedRelay) Start(testing.TB, int) *testutil.Process {
	r.h.MustExec("systemctl", "start", "fedmsg-relay")
	return nil
}

func (r *packagedRelay) Restart(_ testing.TB, k int) {
	// Six restarts in seconds are more than the unit's start limit (5 in
	// 60 s, against crash loops) allows; an admin would see "start request
	// repeated too quickly" and do the same (see the SOP).
	r.h.MustExec("systemctl", "reset-failed", "fedmsg-relay")
	if k < r.restarts {
		r.h.MustExec("systemctl", "restart", "fedmsg-relay")
		return
	}
	r.pids = append(r.pids, r.mainPID())
	r.h.MustExec(append([]string{"rpm", "-U", "--force-debian"}, r.upgrade...)...)
	r.pids = append(r.pids, r.mainPID())
}

func (r *packagedRelay) mainPID() string {
	return strings.TrimSpace(r.h.MustExec("systemctl", "show", "fedmsg-relay", "-p", "MainPID", "--value"))
}

// restartsLoseNothing: issue 15 on the installed package. The package
// enabled fedmsg-relay.socket and the relay runs on its sockets; fedmsg-style
// peers outside the host (processes of this machine, entering only the
// host's network namespace to reach the packaged loopback ports) go through
// the SOP's restart, and then an upgrade to a rebuilt package, without losing
// or reordering a message; the socket unit is never restarted.
func restartsLoseNothing(t *testing.T, h *host.Host, upgrade builtRPMs) {
	host.NeedTools(t, "nsenter")
	if out := strings.TrimSpace(h.MustExec("systemctl", "is-enabled", "fedmsg-relay.socket")); out != "enabled" {
		t.Errorf("fedmsg-relay.socket after dnf install: %s, want enabled", out)
	}
	socketSince := func() string {
		return h.MustExec("systemctl", "show", "fedmsg-relay.socket", "-p", "ActiveState,ActiveEnterTimestampMonotonic")
	}
	before := socketSince()
	if !strings.Contains(before, "ActiveState=active") {
		t.Fatalf("fedmsg-relay.socket not started with the relay: %s", before)
	}
	var rpms []string
	for _, rpm := range []string{upgrade.Main, upgrade.Unit} {
		dst := "/var/tmp/" + filepath.Base(rpm)
		h.MustCopy(rpm, dst)
		rpms = append(rpms, dst)
	}
	since := "@" + strings.TrimSpace(h.MustExec("date", "+%s"))

	sc := restart.FedmsgScenario()
	sc.Restarts++ // the SOP's five, then the upgrade
	sc.Wrap = []string{"nsenter", "--net=/proc/" + strconv.Itoa(h.Pid()) + "/ns/net"}
	target := &packagedRelay{h: h, upgrade: rpms, restarts: sc.Restarts}
	res := restart.Run(t, target, sc)
	t.Log("\n" + res.Report(target.Name()))

	if n := res.TotalLost(); n != 0 {
		t.Errorf("lost %d messages across %d restarts and the upgrade", n, sc.Restarts-1)
	}
	if len(res.Disorder) > 0 {
		t.Errorf("out of order: %v", res.Disorder)
	}
	for i, s := range res.Sent {
		if s < 1000 {
			t.Errorf("producer %d sent only %d messages: the scenario did not run long enough to mean anything", i, s)
		}
	}
	if got := strings.TrimSpace(h.MustExec("rpm", "-q", "--qf", "%{EPOCH}:%{VERSION}-%{RELEASE}", "fedmsg-relay")); got != upgrade.EVR() {
		t.Errorf("after rpm -U: fedmsg-relay %s installed, want %s", got, upgrade.EVR())
	}
	if len(target.pids) != 2 || target.pids[0] == target.pids[1] {
		t.Errorf("the upgrade did not restart the relay: MainPID %v", target.pids)
	}
	if after := socketSince(); after != before {
		t.Errorf("fedmsg-relay.socket was restarted: %s, was %s", after, before)
	}
	// Every new relay took over the held sockets and opened its gate when
	// all three listeners were back, not at resume_hold.
	journal := h.MustExec("journalctl", "-u", "fedmsg-relay", "-o", "cat", "--since", since)
	if n := strings.Count(journal, "reason=subscribed subscriptions=3 expected=3"); n != sc.Restarts {
		t.Errorf("%d of %d relays opened the gate on the listeners' return; journal:\n%s", n, sc.Restarts, journal)
	}
	if n := strings.Count(journal, "handing producers over to the next relay"); n != sc.Restarts {
		t.Errorf("%d of %d relays stopped with the hand-over on inherited sockets; journal:\n%s", n, sc.Restarts, journal)
	}
	// The ports are systemd's and the relay's both.
	for _, port := range []string{"2003", "4001"} {
		out := h.MustExec("ss", "-Hltnp", "sport = :"+port)
		if !strings.Contains(out, `"systemd",pid=1,`) || !strings.Contains(out, `"fedmsg-relay",pid=`+target.mainPID()+",") {
			t.Errorf("port %s is not held by systemd and the relay:\n%s", port, out)
		}
	}
}
