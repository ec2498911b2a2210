// Package bench compares the relay with libzmq's own zmq_proxy (pyzmq's
// zmq.proxy) under the same libzmq load generator, in the same run, and
// reports ratios; and measures the relay's memory idle and after churn.
// Run with `make bench`.
package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

const (
	messages  = 200000
	bodyBytes = 1024
	rounds    = 3
)

type target struct {
	name  string
	start func(b *testing.B, inbound, outbound string) *testutil.Process
}

func relayTarget(b *testing.B, inbound, outbound string) *testutil.Process {
	cfg := testutil.WriteFile(b, "relay.yaml", fmt.Sprintf(`
relay_inbound: %s
relay_outbound: %s
inbound_hwm: 1000000
outbound_hwm: 1000000
log_level: warn
`, inbound, outbound))
	p := testutil.Start(b, testutil.Binary(b, "fedmsg-relay"), "--config", cfg)
	waitListening(b, outbound)
	return p
}

func proxyTarget(b *testing.B, inbound, outbound string) *testutil.Process {
	p := testutil.Start(b, testutil.Python(b), testutil.PeerScript(), "proxy", inbound, outbound, "1000000")
	p.WaitOutput(b, "ready", 10*time.Second)
	return p
}

func waitListening(b *testing.B, ep string) {
	addr := strings.TrimPrefix(ep, "tcp://")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := netDial(addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("nothing listens on %s", ep)
}

// throughput pushes messages through one target and returns messages per
// second seen by the subscriber, and how many arrived.
func throughput(b *testing.B, t target) (float64, int) {
	inbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
	outbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
	proc := t.start(b, inbound, outbound)
	defer func() { _ = proc.Cmd.Process.Kill(); _ = proc.Cmd.Wait() }()

	py := testutil.Python(b)
	counter := exec.Command(py, testutil.PeerScript(), "count", outbound, strconv.Itoa(messages), "2")
	out, err := counter.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := counter.Start(); err != nil {
		b.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		b.Fatalf("counter did not start: %q", lines.Text())
	}
	// Benchmark only: give the subscription time to reach the PUB socket.
	time.Sleep(300 * time.Millisecond)
	if out, err := exec.Command(py, testutil.PeerScript(), "flood", inbound, strconv.Itoa(messages), strconv.Itoa(bodyBytes)).CombinedOutput(); err != nil {
		b.Fatalf("flood: %v\n%s", err, out)
	}
	if !lines.Scan() {
		b.Fatal("counter printed no result")
	}
	var res struct {
		N           int
		First, Last float64
	}
	if err := json.Unmarshal(lines.Bytes(), &res); err != nil {
		b.Fatal(err)
	}
	_ = counter.Wait()
	if res.N < 2 || res.Last <= res.First {
		b.Fatalf("%s: counter saw %d messages", t.name, res.N)
	}
	return float64(res.N-1) / (res.Last - res.First), res.N
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// BenchmarkThroughputVsZMQProxy: 1 KiB fedmsg bodies from a pyzmq PUB
// through the relay (validation on) and through zmq.proxy, alternating,
// median of three rounds each. Target relay/proxy >= 0.7.
func BenchmarkThroughputVsZMQProxy(b *testing.B) {
	targets := []target{{"zmq_proxy", proxyTarget}, {"fedmsg-relay", relayTarget}}
	rates := map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			for _, t := range targets {
				rate, n := throughput(b, t)
				rates[t.name] = append(rates[t.name], rate)
				fmt.Fprintf(os.Stderr, "round %d %-13s %8.0f msg/s (%d/%d delivered)\n", r+1, t.name, rate, n, messages)
			}
		}
	}
	proxy, relay := median(rates["zmq_proxy"]), median(rates["fedmsg-relay"])
	b.ReportMetric(proxy, "proxy-msg/s")
	b.ReportMetric(relay, "relay-msg/s")
	b.ReportMetric(relay/proxy, "relay/proxy")
	fmt.Fprintf(os.Stderr, "median: zmq_proxy %.0f msg/s, fedmsg-relay %.0f msg/s, ratio %.2f (target >= 0.70)\n", proxy, relay, relay/proxy)
}

// BenchmarkMemory: the relay's RSS idle and after 10,000 connect/send/close
// cycles from a pyzmq producer. Target <= 20 MiB idle, flat after churn.
func BenchmarkMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		inbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
		outbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
		proc := relayTarget(b, inbound, outbound)
		time.Sleep(500 * time.Millisecond)
		pid := proc.Cmd.Process.Pid
		idle := rssKiB(b, pid)
		fdsIdle := fds(b, pid)
		// Two rounds: the first shows the working set churn needs, the second
		// that it does not keep growing.
		var after [2]int
		for round := range after {
			if out, err := exec.Command(testutil.Python(b), testutil.PeerScript(), "churn", inbound, "10000").CombinedOutput(); err != nil {
				b.Fatalf("churn: %v\n%s", err, out)
			}
			time.Sleep(time.Second) // let libzmq finish closing connections
			after[round] = rssKiB(b, pid)
		}
		fdsAfter := fds(b, pid)
		_ = proc.Cmd.Process.Kill()
		_ = proc.Cmd.Wait()
		b.ReportMetric(float64(idle)/1024, "idle-MiB")
		b.ReportMetric(float64(after[0])/1024, "churn1-MiB")
		b.ReportMetric(float64(after[1])/1024, "churn2-MiB")
		fmt.Fprintf(os.Stderr, "relay RSS idle %.1f MiB, after 10000 connect/send/close cycles %.1f MiB, after 10000 more %.1f MiB; fds %d -> %d\n",
			float64(idle)/1024, float64(after[0])/1024, float64(after[1])/1024, fdsIdle, fdsAfter)
	}
}

func rssKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func fds(b *testing.B, pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.Fatal(err)
	}
	return len(entries)
}
