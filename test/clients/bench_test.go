package clients

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
)

// BenchmarkEmitVsPython times one emit, from process start to the message
// seen by a subscriber behind the relay, for our fedmsg-logger and for a
// Python client that behaves like the original (PUB connect, sleep 0.5 s,
// send). Both run alternately in the same benchmark so the machine's load
// affects them alike; the result is reported as a ratio (target:
// go/python <= 0.05).
//
//	go test -run '^$' -bench EmitVsPython -benchtime 5x ./test/clients
func BenchmarkEmitVsPython(b *testing.B) {
	python := clienttest.RequirePython(b)
	r := startRelay(b)
	seen := goSubscriber(b, r)
	var goWall, pyWall, goCPU, pyCPU time.Duration
	for i := 0; i < b.N; i++ {
		label := fmt.Sprintf("bench-go-%d", i)
		wall, cpu := timeEmit(b, seen, label, exec.Command(bin("fedmsg-logger"),
			"--relay", r.Inbound, "--message", label))
		goWall, goCPU = goWall+wall, goCPU+cpu
		label = fmt.Sprintf("bench-py-%d", i)
		wall, cpu = timeEmit(b, seen, label+"-0", exec.Command(python, "-c", pyFedmsgProducer, r.Inbound, "1", label))
		pyWall, pyCPU = pyWall+wall, pyCPU+cpu
	}
	perEmit := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(perEmit(goWall), "go-ms/emit")
	b.ReportMetric(perEmit(pyWall), "python-ms/emit")
	b.ReportMetric(float64(goWall)/float64(pyWall), "go/python")
	// CPU of the client process (user+system): what a loaded machine
	// cannot inflate. Python's sleep costs none, so this ratio is kinder
	// to Python than the wall-clock one.
	b.ReportMetric(perEmit(goCPU), "go-cpu-ms/emit")
	b.ReportMetric(perEmit(pyCPU), "python-cpu-ms/emit")
}

// timeEmit starts cmd and returns the wall time until a body containing
// {"log": label} is seen, and the CPU time the process used.
func timeEmit(b *testing.B, seen <-chan []byte, label string, cmd *exec.Cmd) (wall, cpu time.Duration) {
	b.Helper()
	want := []byte(fmt.Sprintf(`"log":%q`, label))
	wantSpaced := []byte(fmt.Sprintf(`"log": %q`, label)) // Python's json.dumps
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for wall == 0 {
		select {
		case body := <-seen:
			if bytes.Contains(body, want) || bytes.Contains(body, wantSpaced) {
				wall = time.Since(start)
			}
		case <-timeout:
			b.Fatalf("%s never seen", label)
		}
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("%v: %v", cmd.Args, err)
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// goSubscriber connects a SUB socket to the relay's outbound side, waits
// until it receives, and returns the bodies it sees.
func goSubscriber(b *testing.B, r *relay) <-chan []byte {
	b.Helper()
	sub, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		b.Fatal(err)
	}
	if err := sub.SetSubscribe(""); err != nil {
		b.Fatal(err)
	}
	if err := sub.Connect(r.Outbound); err != nil {
		b.Fatal(err)
	}
	bodies := make(chan []byte, 1000)
	ready := make(chan struct{})
	go func() {
		defer sub.Close()
		probing := true
		for {
			frames, err := sub.RecvMessageBytes(0)
			if err != nil || len(frames) != 2 {
				return
			}
			if string(frames[0]) == "probe" {
				if probing {
					probing = false
					close(ready)
				}
				continue
			}
			bodies <- frames[1]
		}
	}()
	probeUntil(b, r, ready)
	return bodies
}

// BenchmarkSignedEmit times one emit of our fedmsg-logger, from process
// start to the message seen behind the relay, unsigned and signed (RSA-2048,
// sign_messages on), with plain literal config files and with a directory
// that also holds a logging.py only Python can read (imports, a class), as
// Fedora's did. The four run in turn so that load affects them alike; b.N
// rounds of emitsPerRound each. Target: signed/unsigned <= 2.
//
//	go test -run '^$' -bench SignedEmit -benchtime 1x ./test/clients
func BenchmarkSignedEmit(b *testing.B) {
	const emitsPerRound = 20
	bus := newSignedBus(b)
	unsigned := emptyConfigDir(b)
	writeFile(b, unsigned, "relay.py", fmt.Sprintf("config = dict(relay_inbound=[%q])\n", bus.Inbound))
	const loggingPy = `import logging

class NoisyFilter(logging.Filter):
    def filter(self, record):
        return True

config = dict(logging=dict(version=1, filters={"noisy": {"()": NoisyFilter}}))
`
	// copyWith copies a config directory and sets one file in the copy.
	copyWith := func(dir, name, content string) string {
		cp := emptyConfigDir(b)
		entries, err := os.ReadDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				b.Fatal(err)
			}
			writeFile(b, cp, e.Name(), string(data))
		}
		writeFile(b, cp, name, content)
		return cp
	}
	withPython := func(dir string) string { return copyWith(dir, "logging.py", loggingPy) }
	// The bus's ssl.py is Fedora's Python shape; its literal equivalent
	// keeps the "signed" run on the literal reader.
	host := shortHost(b)
	literalSigned := copyWith(bus.conf, "ssl.py", fmt.Sprintf(
		"config = dict(sign_messages=True, ssldir=%q, certnames={%q: %q})\n",
		bus.ssldir, "shell."+host, shellCert(b)))
	runs := []struct {
		name string
		conf string
		wall time.Duration
	}{
		{"unsigned", unsigned, 0}, {"signed", literalSigned, 0},
		{"python-unsigned", withPython(unsigned), 0}, {"python-signed", withPython(bus.conf), 0},
	}
	seen := goSubscriber(b, bus.relay)
	for i := 0; i < b.N*emitsPerRound; i++ {
		for r := range runs {
			label := fmt.Sprintf("bench-%d-%s", i, runs[r].name)
			cmd := exec.Command(bin("fedmsg-logger"), "--message", label)
			cmd.Env = append(os.Environ(), "FEDMSG_CONFIG="+runs[r].conf)
			wall, _ := timeEmit(b, seen, label, cmd)
			runs[r].wall += wall
		}
	}
	for _, run := range runs {
		b.ReportMetric(float64(run.wall.Microseconds())/1000/float64(b.N*emitsPerRound), run.name+"-ms/emit")
	}
	b.ReportMetric(float64(runs[1].wall)/float64(runs[0].wall), "signed/unsigned")
	b.ReportMetric(float64(runs[3].wall)/float64(runs[2].wall), "python-signed/unsigned")
}
