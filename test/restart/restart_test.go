package restart

import (
	"strings"
	"testing"
	"time"
)

// Five restarts in a row with fedmsg-style peers and fedmsg-logger --confirm
// running throughout: every listener receives every message, in order per
// producer, and every confirmed sender succeeds.
func TestRestartLosesNothing(t *testing.T) {
	sc := FedmsgScenario()
	sc.Confirmed = true
	res := Run(t, NewRelay(t, "resume_hold: 2s\n"), sc)
	t.Log("\n" + res.Report("fedmsg-relay"))
	if n := res.TotalLost(); n != 0 {
		t.Errorf("lost %d messages across %d restarts; the relay's logs:\n%s", n, sc.Restarts, strings.Join(res.Logs, "\n"))
	}
	// Confirmed senders mid-send at a restart get their ok from the next
	// relay within --timeout, and what was confirmed reached every listener.
	if len(res.ConfirmFailures) > 0 || len(res.ConfirmedLost) > 0 || res.Confirmed < 10 {
		t.Errorf("fedmsg-logger --confirm: %d ok, failures %v, confirmed but not received %v", res.Confirmed, res.ConfirmFailures, res.ConfirmedLost)
	}
	if len(res.Disorder) > 0 {
		t.Errorf("out of order: %v", res.Disorder)
	}
	for i, s := range res.Sent {
		if s < 1000 {
			t.Errorf("producer %d sent only %d messages: the scenario did not run long enough to mean anything", i, s)
		}
	}
	// Each new generation held until all three listeners were back, and
	// said so; none waited for resume_hold.
	for gen, log := range res.Logs[1:] {
		if !strings.Contains(log, "reason=subscribed subscriptions=3 expected=3") {
			t.Errorf("generation %d did not open its gate on the listeners' return:\n%s", gen+2, log)
		}
	}
	for k, rs := range res.Restarts {
		if rs.Gap > 10*time.Second {
			t.Errorf("restart %d: forwarding resumed only %v after SIGTERM", k+1, rs.Gap)
		}
	}
}

// A listener that was subscribed and never comes back: the gate opens at
// resume_hold and nobody else loses anything.
func TestRestartWithAListenerGoneForGood(t *testing.T) {
	sc := FedmsgScenario()
	sc.Restarts, sc.GoneForGood = 1, true
	res := Run(t, NewRelay(t, "resume_hold: 2s\n"), sc)
	t.Log("\n" + res.Report("fedmsg-relay"))
	if n := res.TotalLost(); n != 0 {
		t.Errorf("the listeners that stayed lost %d messages", n)
	}
	if len(res.Disorder) > 0 {
		t.Errorf("out of order: %v", res.Disorder)
	}
	last := res.Logs[len(res.Logs)-1]
	if !strings.Contains(last, "reason=resume_hold subscriptions=2 expected=3") {
		t.Errorf("the gate did not open at resume_hold with 2 of 3 subscriptions back:\n%s", last)
	}
	if gap := res.Restarts[0].Gap; gap < 2*time.Second {
		t.Errorf("forwarding resumed %v after SIGTERM, before resume_hold", gap)
	}
}
