package bench

import (
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/test/restart"
)

// BenchmarkRestartLoss: the scenario (2 fedmsg-style producers every
// 5 ms, 3 listeners, 5 restarts by SIGTERM and start) through the relay with
// its listening sockets held as by fedmsg-relay.socket, and through libzmq's
// zmq_proxy bound and restarted the ordinary way, in the same run. Reports
// messages lost per restart (all listeners) and the restart gap (SIGTERM to
// the first message published by the next generation).
func BenchmarkRestartLoss(b *testing.B) {
	for range b.N {
		for _, target := range []restart.Target{restart.NewRelay(b, "resume_hold: 2s\n"), restart.NewProxy(b)} {
			res := restart.Run(b, target, restart.FedmsgScenario())
			b.Log("\n" + res.Report(target.Name()))
			lost, gap := 0, time.Duration(0)
			for _, rs := range res.Restarts {
				for _, l := range rs.Lost {
					lost += l
				}
				gap = max(gap, rs.Gap)
			}
			b.ReportMetric(float64(lost)/float64(len(res.Restarts)), target.Name()+"-lost/restart")
			b.ReportMetric(gap.Seconds()*1000, target.Name()+"-max-gap-ms")
		}
	}
}
