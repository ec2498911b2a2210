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

// target is something messages are pushed through.
type target struct {
	name     string
	start    func(b *testing.B, inbound, outbound string) *testutil.Process
	messages int // per round; 0 means the default, messages
}

// configuredRelay starts the relay with the benchmarks' base configuration
// plus the YAML extra returns (nil for none) and the given flags.
func configuredRelay(extra func(b *testing.B) string, args ...string) func(b *testing.B, inbound, outbound string) *testutil.Process {
	return func(b *testing.B, inbound, outbound string) *testutil.Process {
		yaml := fmt.Sprintf(`
relay_inbound: %s
relay_outbound: %s
inbound_hwm: 1000000
outbound_hwm: 1000000
log_level: warn
`, inbound, outbound)
		if extra != nil {
			yaml += extra(b) + "\n"
		}
		cfg := testutil.WriteFile(b, "relay.yaml", yaml)
		p := testutil.Start(b, testutil.Binary(b, "fedmsg-relay"), append([]string{"--config", cfg}, args...)...)
		waitListening(b, outbound)
		return p
	}
}

// relayTarget is the relay as packaged: validation on, nothing else (inbound
// ZMTP terminated in Go, the default inbound_engine).
var relayTarget = configuredRelay(nil)

// libzmqInboundTarget is the relay with the libzmq SUB socket inbound, the
// engine of earlier releases, measured beside the default.
var libzmqInboundTarget = configuredRelay(func(*testing.B) string { return "inbound_engine: libzmq" })

// goOutboundTarget and libzmqOutboundTarget name each outbound engine
// explicitly (the default's inbound), so the comparison holds whichever is
// the default.
var (
	goOutboundTarget     = configuredRelay(func(*testing.B) string { return "outbound_engine: go" })
	libzmqOutboundTarget = configuredRelay(func(*testing.B) string { return "outbound_engine: libzmq" })
)

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

// result of one run through a target.
type result struct {
	rate      float64 // messages per second seen by the subscriber
	cpuPerMsg float64 // the target's CPU seconds (user+system) per message
	delivered int
}

// throughputOf pushes n messages through one target and measures what the
// subscriber saw and the target's CPU per message.
func throughputOf(b *testing.B, t target, n int) result {
	inbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
	outbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
	proc := t.start(b, inbound, outbound)
	defer func() { _ = proc.Cmd.Process.Kill(); _ = proc.Cmd.Wait() }()
	pid := proc.Cmd.Process.Pid

	py := testutil.Python(b)
	counter := exec.Command(py, testutil.PeerScript(), "count", outbound, strconv.Itoa(n), "2")
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
	cpuBefore := cpuSeconds(b, pid)
	if out, err := exec.Command(py, testutil.PeerScript(), "flood", inbound, strconv.Itoa(n), strconv.Itoa(bodyBytes)).CombinedOutput(); err != nil {
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
	return result{
		rate:      float64(res.N-1) / (res.Last - res.First),
		cpuPerMsg: (cpuSeconds(b, pid) - cpuBefore) / float64(n),
		delivered: res.N,
	}
}

func cpuSeconds(b *testing.B, pid int) float64 {
	s, err := testutil.CPUSeconds(pid)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// BenchmarkThroughputVsZMQProxy: 1 KiB fedmsg bodies from a pyzmq PUB
// through the relay (validation on) and through zmq.proxy, alternating,
// median of three rounds each. Target relay/proxy >= 0.7.
func BenchmarkThroughputVsZMQProxy(b *testing.B) {
	m := compare(b, []target{{name: "zmq_proxy", start: proxyTarget}, {name: "fedmsg-relay", start: relayTarget},
		{name: "relay-libzmq-in", start: libzmqInboundTarget},
		{name: "relay-go-out", start: goOutboundTarget}, {name: "relay-libzmq-out", start: libzmqOutboundTarget}})
	proxy, relay, libzmqIn, goOut, libzmqOut := m[0], m[1], m[2], m[3], m[4]
	b.ReportMetric(libzmqIn.rate/proxy.rate, "relay-libzmq-inbound/proxy")
	b.ReportMetric(goOut.rate/proxy.rate, "relay-go-outbound/proxy")
	b.ReportMetric(libzmqOut.rate/proxy.rate, "relay-libzmq-outbound/proxy")
	b.ReportMetric(proxy.rate, "proxy-msg/s")
	b.ReportMetric(relay.rate, "relay-msg/s")
	b.ReportMetric(relay.rate/proxy.rate, "relay/proxy")
	b.ReportMetric(proxy.cpuPerMsg/relay.cpuPerMsg, "cpu-efficiency-relay/proxy")
	fmt.Fprintf(os.Stderr, "median: zmq_proxy %.0f msg/s, fedmsg-relay %.0f msg/s, throughput ratio %.2f (target >= 0.70)\n", proxy.rate, relay.rate, relay.rate/proxy.rate)
	fmt.Fprintf(os.Stderr, "median CPU per message: zmq_proxy %.2f us, fedmsg-relay %.2f us, efficiency ratio %.2f\n", proxy.cpuPerMsg*1e6, relay.cpuPerMsg*1e6, proxy.cpuPerMsg/relay.cpuPerMsg)
	fmt.Fprintf(os.Stderr, "inbound_engine libzmq: %.0f msg/s, throughput ratio %.2f, %.2f us CPU/msg, efficiency ratio %.2f\n",
		libzmqIn.rate, libzmqIn.rate/proxy.rate, libzmqIn.cpuPerMsg*1e6, proxy.cpuPerMsg/libzmqIn.cpuPerMsg)
	for _, e := range []struct {
		name string
		r    result
	}{{"go", goOut}, {"libzmq", libzmqOut}} {
		fmt.Fprintf(os.Stderr, "outbound_engine %s: %.0f msg/s, throughput ratio %.2f, %.2f us CPU/msg, efficiency ratio %.2f\n",
			e.name, e.r.rate, e.r.rate/proxy.rate, e.r.cpuPerMsg*1e6, proxy.cpuPerMsg/e.r.cpuPerMsg)
	}
	fmt.Fprintf(os.Stderr, "outbound_engine go / libzmq throughput: %.2f\n", goOut.rate/libzmqOut.rate)
}

// compare pushes messages through every target, alternating, for rounds
// rounds (times b.N), prints each round and returns each target's medians.
func compare(b *testing.B, targets []target) []result {
	rates, cpus := make([][]float64, len(targets)), make([][]float64, len(targets))
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			for k, t := range targets {
				n := t.messages
				if n == 0 {
					n = messages
				}
				res := throughputOf(b, t, n)
				rates[k] = append(rates[k], res.rate)
				cpus[k] = append(cpus[k], res.cpuPerMsg)
				fmt.Fprintf(os.Stderr, "round %d %-13s %8.0f msg/s, %8.2f us CPU/msg (%d/%d delivered)\n",
					r+1, t.name, res.rate, res.cpuPerMsg*1e6, res.delivered, n)
			}
		}
	}
	medians := make([]result, len(targets))
	for k := range targets {
		medians[k] = result{rate: median(rates[k]), cpuPerMsg: median(cpus[k])}
	}
	return medians
}

// BenchmarkMemory: the relay's RSS, with each inbound engine, idle and after each of three rounds of
// 10,000 connect/send/close cycles from a pyzmq producer. Target <= 20 MiB
// idle, flat after churn. The first rounds warm up a working set (the Go heap
// up to its 4 MiB minimum goal, libzmq's allocator arena, code pages); the
// growth in the last round is the figure for "flat".
func BenchmarkMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		for _, engine := range []struct {
			name  string
			start func(b *testing.B, inbound, outbound string) *testutil.Process
		}{{"libzmq", libzmqInboundTarget}, {"go", relayTarget}} {
			memoryOf(b, engine.name, engine.start)
		}
	}
}

// memoryOf measures one inbound engine for BenchmarkMemory.
func memoryOf(b *testing.B, engine string, start func(b *testing.B, inbound, outbound string) *testutil.Process) {
	inbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
	outbound := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
	proc := start(b, inbound, outbound)
	time.Sleep(500 * time.Millisecond)
	pid := proc.Cmd.Process.Pid
	idle := rssKiB(b, pid)
	fdsIdle := fds(b, pid)
	var after [3]int
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
	mib := func(kib int) float64 { return float64(kib) / 1024 }
	b.ReportMetric(mib(idle), engine+"-idle-MiB")
	b.ReportMetric(mib(after[len(after)-1]), engine+"-churned-MiB")
	b.ReportMetric(mib(after[len(after)-1]-after[len(after)-2]), engine+"-last-round-growth-MiB")
	fmt.Fprintf(os.Stderr, "inbound_engine %s: relay RSS idle %.1f MiB; after each round of 10000 connect/send/close cycles %.1f, %.1f, %.1f MiB (last round %+.1f MiB); fds %d -> %d\n",
		engine, mib(idle), mib(after[0]), mib(after[1]), mib(after[2]), mib(after[2]-after[1]), fdsIdle, fdsAfter)
}

func rssKiB(b *testing.B, pid int) int {
	kib, err := testutil.RSSKiB(pid)
	if err != nil {
		b.Fatal(err)
	}
	return kib
}

func fds(b *testing.B, pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.Fatal(err)
	}
	return len(entries)
}
