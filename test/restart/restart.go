// Package restart runs fedmsg-style peers through relay restarts and counts
// what each listener lost: the proof behind "a restart loses nothing". The
// relay runs as systemd runs it with the socket unit: this process holds the
// listening sockets and passes them to each relay generation (LISTEN_FDS).
// The same scenario runs against libzmq's zmq_proxy, bound and restarted the
// ordinary way, as the baseline.
package restart

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// Scenario is one run: producers send every Interval while the target is
// restarted Restarts times, Settle apart.
type Scenario struct {
	Producers, Listeners int
	Interval             time.Duration
	Restarts             int
	Settle               time.Duration
	// GoneForGood kills one listener while the target is down for the last
	// restart: it was subscribed before and never comes back.
	GoneForGood bool
	// Confirmed runs fedmsg-logger --confirm one message after the other
	// throughout, on targets with a confirm endpoint.
	Confirmed bool
	// Wrap prefixes each peer's command line, e.g. nsenter into the network
	// of a booted host whose relay the peers reach on its loopback.
	Wrap []string
}

// FedmsgScenario is the issue's: 2 producers every 5 ms, 3 listeners, 5 restarts.
func FedmsgScenario() Scenario {
	return Scenario{Producers: 2, Listeners: 3, Interval: 5 * time.Millisecond, Restarts: 5, Settle: 1500 * time.Millisecond}
}

// Target is what the peers go through: one process per generation.
type Target interface {
	Name() string
	Inbound() string
	Outbound() string
	Confirm() string // "" without confirmed delivery
	// Start starts one generation; it need not wait for readiness.
	Start(t testing.TB, gen int) *testutil.Process
}

// Restarter is a Target restarted as a whole (systemctl restart, a package
// upgrade) instead of Run stopping one generation and starting the next: its
// Start is called once, for the first generation, and may return nil.
type Restarter interface {
	Restart(t testing.TB, k int) // the k-th restart, returning once it is done
}

// Restart is what one restart cost.
type Restart struct {
	Lost     []int         // per listener, messages of all producers
	Gap      time.Duration // SIGTERM to the first message the next generation published
	Stopping time.Duration // SIGTERM to the old generation's exit (the drain); a Restarter's whole restart
}

// Result of a scenario.
type Result struct {
	Restarts  []Restart
	Sent      []int    // per producer
	Received  []int    // per listener
	Disorder  []string // out-of-order or repeated messages
	Holes     []string // where messages were lost, for the report
	Gone      int      // the listener killed for good, or -1
	LostAfter []int    // per listener: lost outside any restart
	// fedmsg-logger --confirm runs: how many exited 0, the failures'
	// output, and confirmed messages some listener never received.
	Confirmed       int
	ConfirmFailures []string
	ConfirmedLost   []string
	Logs            []string // each generation's output
}

// TotalLost sums every loss.
func (r *Result) TotalLost() int {
	n := 0
	for _, rs := range r.Restarts {
		for _, l := range rs.Lost {
			n += l
		}
	}
	for _, l := range r.LostAfter {
		n += l
	}
	return n
}

// Report renders the result for logs and benchmark output, compactly
// (benchmark logs are cut after a few lines).
func (r *Result) Report(name string) string {
	var lost, gaps, drains []string
	for _, rs := range r.Restarts {
		lost = append(lost, fmt.Sprint(rs.Lost))
		gaps = append(gaps, rs.Gap.Round(time.Millisecond).String())
		drains = append(drains, rs.Stopping.Round(time.Millisecond).String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: lost per restart (per listener) %s; gap SIGTERM to publishing %s; stop took %s\n",
		name, strings.Join(lost, " "), strings.Join(gaps, " "), strings.Join(drains, " "))
	fmt.Fprintf(&b, "%s: sent %v, received %v per listener, lost elsewhere %v, disorder %d", name, r.Sent, r.Received, r.LostAfter, len(r.Disorder))
	if r.Confirmed+len(r.ConfirmFailures) > 0 {
		fmt.Fprintf(&b, "; fedmsg-logger --confirm: %d ok, %d failed, %d confirmed but not received", r.Confirmed, len(r.ConfirmFailures), len(r.ConfirmedLost))
	}
	for i, h := range r.Holes {
		if i == 3 {
			fmt.Fprintf(&b, "\n  ... %d more holes", len(r.Holes)-i)
			break
		}
		fmt.Fprintf(&b, "\n  lost: %s", h)
	}
	return b.String()
}

// arrival is one message a listener received.
type arrival struct {
	producer, seq int
	at            time.Time
}

type listener struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	got   []arrival
	logs  map[string]bool // fedmsg-logger messages received
}

func (l *listener) snapshot() []arrival {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]arrival(nil), l.got...)
}

func peerScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "peers.py")
}

// startPeer starts peers.py (through wrap) and returns it once it printed "ready".
func startPeer(t testing.TB, wrap []string, args ...string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	argv := append(append(append([]string(nil), wrap...), testutil.Python(t), peerScript()), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("peers.py %v did not start: %q", args, lines.Text())
	}
	return cmd, stdin, lines
}

func startListener(t testing.TB, wrap []string, outbound string) *listener {
	cmd, stdin, lines := startPeer(t, wrap, "listen", outbound)
	l := &listener{cmd: cmd, stdin: stdin, logs: map[string]bool{}}
	go func() {
		for lines.Scan() {
			if text, ok := strings.CutPrefix(lines.Text(), "log "); ok {
				l.mu.Lock()
				l.logs[text] = true
				l.mu.Unlock()
				continue
			}
			var a arrival
			if _, err := fmt.Sscan(lines.Text(), &a.producer, &a.seq); err != nil {
				continue
			}
			a.at = time.Now()
			l.mu.Lock()
			l.got = append(l.got, a)
			l.mu.Unlock()
		}
	}()
	return l
}

// stop sends SIGTERM and waits for the generation to exit.
func stop(t testing.TB, p *testutil.Process) time.Duration {
	start := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = p.Cmd.Wait()
	return time.Since(start)
}

// Run runs the scenario through target.
func Run(t testing.TB, target Target, sc Scenario) *Result {
	t.Helper()
	res := &Result{Gone: -1}
	gen := target.Start(t, 1)
	var ls []*listener
	for range sc.Listeners {
		ls = append(ls, startListener(t, sc.Wrap, target.Outbound()))
	}
	type producer struct {
		stdin io.WriteCloser
		lines *bufio.Scanner
	}
	var ps []producer
	for i := range sc.Producers {
		_, stdin, lines := startPeer(t, sc.Wrap, "produce", target.Inbound(), strconv.Itoa(i), fmt.Sprint(sc.Interval.Seconds()*1000))
		ps = append(ps, producer{stdin, lines})
	}
	// Every path is live once each listener heard from each producer; what
	// a PUB sent before its first subscription arrived is not a restart's.
	heardAll := func(l *listener) bool {
		seen := map[int]bool{}
		for _, a := range l.snapshot() {
			seen[a.producer] = true
		}
		return len(seen) == sc.Producers
	}
	for i, l := range ls {
		testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%s: listener %d hears every producer", target.Name(), i), func() bool { return heardAll(l) })
	}

	confirmed := func() {}
	if sc.Confirmed && target.Confirm() != "" {
		confirmed = confirmLoop(t, target, res)
	}
	restarter, _ := target.(Restarter)
	var terms []time.Time
	for k := 1; k <= sc.Restarts; k++ {
		time.Sleep(sc.Settle) // steady traffic between restarts: pacing, not a check
		terms = append(terms, time.Now())
		var rs Restart
		if restarter != nil {
			restarter.Restart(t, k)
			rs.Stopping = time.Since(terms[k-1])
		} else {
			rs.Stopping = stop(t, gen)
			res.Logs = append(res.Logs, gen.Output())
		}
		if sc.GoneForGood && k == sc.Restarts {
			res.Gone = len(ls) - 1
			_ = ls[res.Gone].cmd.Process.Kill()
		}
		started := time.Now()
		if restarter == nil {
			gen = target.Start(t, k+1)
		}
		// Forwarding again: every live listener got a message from the new generation.
		first := time.Time{}
		for i, l := range ls {
			if i == res.Gone {
				continue
			}
			testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%s restart %d: listener %d hears the new generation", target.Name(), k, i), func() bool {
				for _, a := range l.snapshot() {
					if a.at.After(started) {
						if first.IsZero() || a.at.Before(first) {
							first = a.at
						}
						return true
					}
				}
				return false
			})
		}
		rs.Gap = first.Sub(terms[k-1])
		res.Restarts = append(res.Restarts, rs)
	}
	time.Sleep(sc.Settle)
	confirmed()
	for i, p := range ps {
		p.stdin.Close()
		var n int
		if !p.lines.Scan() {
			t.Fatalf("producer %d printed no count", i)
		}
		if _, err := fmt.Sscanf(p.lines.Text(), "sent %d", &n); err != nil {
			t.Fatalf("producer %d: %q", i, p.lines.Text())
		}
		res.Sent = append(res.Sent, n)
	}
	// Give the last messages time to arrive (generous on a loaded machine).
	complete := func(l *listener) bool {
		last := map[int]int{}
		for _, a := range l.snapshot() {
			last[a.producer] = a.seq
		}
		for p, n := range res.Sent {
			if last[p] != n-1 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for i, l := range ls {
		for i != res.Gone && !complete(l) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if restarter == nil {
		stop(t, gen)
		res.Logs = append(res.Logs, gen.Output())
	}
	res.account(ls, terms)
	for i, l := range ls {
		for k := range res.Confirmed {
			if text := fmt.Sprintf("confirm-%d", k); i != res.Gone && !l.logs[text] {
				res.ConfirmedLost = append(res.ConfirmedLost, fmt.Sprintf("listener %d: %s", i, text))
			}
		}
	}
	return res
}

// confirmLoop runs fedmsg-logger --confirm, one message after the other,
// until the returned function is called; it counts in res the runs that
// exited 0 (their messages are confirm-0, confirm-1, ...) and keeps the
// failures' output.
func confirmLoop(t testing.TB, target Target, res *Result) (stop func()) {
	logger := testutil.Binary(t, "fedmsg-logger")
	config := t.TempDir() // an empty fedmsg.d: only the flags count
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			select {
			case <-quit:
				return
			default:
			}
			cmd := exec.Command(logger, "--confirm", "--timeout", "5s", "--message", fmt.Sprintf("confirm-%d", res.Confirmed),
				"--relay", target.Inbound(), "--relay-confirm", target.Confirm())
			cmd.Env = append(os.Environ(), "FEDMSG_CONFIG="+config)
			if out, err := cmd.CombinedOutput(); err != nil {
				res.ConfirmFailures = append(res.ConfirmFailures, fmt.Sprintf("run %d: %v: %s", n, err, out))
				continue
			}
			res.Confirmed++
		}
	}()
	return func() { close(quit); <-done }
}

// account finds, per listener and producer, every sequence number missing
// after the first one heard, and charges it to the restart before the
// message that arrived after the hole.
func (res *Result) account(ls []*listener, terms []time.Time) {
	for k := range res.Restarts {
		res.Restarts[k].Lost = make([]int, len(ls))
	}
	res.LostAfter = make([]int, len(ls))
	for i, l := range ls {
		got := l.snapshot()
		res.Received = append(res.Received, len(got))
		if i == res.Gone {
			continue
		}
		byProducer := map[int][]arrival{}
		for _, a := range got {
			byProducer[a.producer] = append(byProducer[a.producer], a)
		}
		for p, n := range res.Sent {
			as := byProducer[p]
			if len(as) == 0 {
				res.LostAfter[i] += n
				continue
			}
			next := as[0].seq
			for _, a := range as {
				if a.seq < next {
					res.Disorder = append(res.Disorder, fmt.Sprintf("listener %d: producer %d seq %d after %d", i, p, a.seq, next-1))
					continue
				}
				if a.seq > next {
					res.charge(i, a.seq-next, a.at, terms)
					res.Holes = append(res.Holes, fmt.Sprintf("listener %d producer %d: seq %d-%d, next arrived %s", i, p, next, a.seq-1, sinceTerm(a.at, terms)))
				}
				next = a.seq + 1
			}
			if next < n { // the tail never arrived
				res.charge(i, n-next, time.Now(), terms)
			}
		}
	}
}

// sinceTerm says when at was, relative to the last SIGTERM before it.
func sinceTerm(at time.Time, terms []time.Time) string {
	k := sort.Search(len(terms), func(j int) bool { return terms[j].After(at) }) - 1
	if k < 0 {
		return "before the first restart"
	}
	return fmt.Sprintf("%v after SIGTERM %d", at.Sub(terms[k]).Round(time.Millisecond), k+1)
}

func (res *Result) charge(listener, lost int, at time.Time, terms []time.Time) {
	k := sort.Search(len(terms), func(j int) bool { return terms[j].After(at) }) - 1
	if k < 0 {
		res.LostAfter[listener] += lost
		return
	}
	res.Restarts[k].Lost[listener] += lost
}

// Relay is the fedmsg-relay binary with socket activation: the listening
// sockets live in this process across generations, as in a socket unit.
type Relay struct {
	inbound, outbound, confirm string
	held                       []*net.TCPListener
	config                     string
}

// NewRelay holds three loopback listening sockets and writes a configuration
// with extra YAML appended and a fresh state directory.
func NewRelay(t testing.TB, extra string) *Relay {
	r := &Relay{}
	for _, ep := range []*string{&r.inbound, &r.outbound, &r.confirm} {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		r.held = append(r.held, ln.(*net.TCPListener))
		*ep = "tcp://" + ln.Addr().String()
	}
	r.config = testutil.WriteFile(t, "relay.yaml", fmt.Sprintf(`relay_inbound: %s
relay_outbound: %s
relay_inbound_confirm: %s
state_directory: %s
%s
`, r.inbound, r.outbound, r.confirm, t.TempDir(), extra))
	return r
}

func (r *Relay) Name() string     { return "fedmsg-relay" }
func (r *Relay) Inbound() string  { return r.inbound }
func (r *Relay) Outbound() string { return r.outbound }
func (r *Relay) Confirm() string  { return r.confirm }

// Start passes dups of the held sockets as LISTEN_FDS, named as the socket
// unit names them.
func (r *Relay) Start(t testing.TB, gen int) *testutil.Process {
	t.Helper()
	var files []*os.File
	for _, ln := range r.held {
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	cmd := testutil.Activated(files, []string{"inbound", "outbound", "confirm"}, testutil.Binary(t, "fedmsg-relay"), "--config", r.config)
	p := &testutil.Process{Cmd: cmd}
	cmd.Stdout, cmd.Stderr = p, p
	err := cmd.Start()
	for _, f := range files {
		f.Close() // the child has its own
	}
	if err != nil {
		t.Fatalf("start relay generation %d: %v", gen, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// Proxy is libzmq's zmq_proxy through pyzmq, binding its own sockets each
// generation: what a relay without socket activation and a gate does.
type Proxy struct{ inbound, outbound string }

// NewProxy picks two free loopback ports.
func NewProxy(t testing.TB) *Proxy {
	return &Proxy{
		inbound:  fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)),
		outbound: fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)),
	}
}

func (p *Proxy) Name() string     { return "zmq_proxy" }
func (p *Proxy) Inbound() string  { return p.inbound }
func (p *Proxy) Outbound() string { return p.outbound }
func (p *Proxy) Confirm() string  { return "" }

func (p *Proxy) Start(t testing.TB, gen int) *testutil.Process {
	t.Helper()
	proc := testutil.Start(t, testutil.Python(t), peerScript(), "proxy", p.inbound, p.outbound)
	proc.WaitOutput(t, "ready", 30*time.Second)
	return proc
}
