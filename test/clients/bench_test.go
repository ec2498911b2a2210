package clients

import (
	"bytes"
	"fmt"
	"os/exec"
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
	var goTotal, pyTotal time.Duration
	for i := 0; i < b.N; i++ {
		label := fmt.Sprintf("bench-go-%d", i)
		goTotal += timeEmit(b, seen, label, exec.Command(bin("fedmsg-logger"),
			"--relay", r.Inbound, "--message", label))
		label = fmt.Sprintf("bench-py-%d", i)
		pyTotal += timeEmit(b, seen, label+"-0", exec.Command(python, "-c", pyFedmsgProducer, r.Inbound, "1", label))
	}
	b.ReportMetric(float64(goTotal.Microseconds())/1000/float64(b.N), "go-ms/emit")
	b.ReportMetric(float64(pyTotal.Microseconds())/1000/float64(b.N), "python-ms/emit")
	b.ReportMetric(float64(goTotal)/float64(pyTotal), "go/python")
}

// timeEmit starts cmd and returns the time until a body containing
// {"log": label} is seen.
func timeEmit(b *testing.B, seen <-chan []byte, label string, cmd *exec.Cmd) time.Duration {
	b.Helper()
	want := []byte(fmt.Sprintf(`"log":%q`, label))
	wantSpaced := []byte(fmt.Sprintf(`"log": %q`, label)) // Python's json.dumps
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case body := <-seen:
			if bytes.Contains(body, want) || bytes.Contains(body, wantSpaced) {
				return time.Since(start)
			}
		case <-timeout:
			b.Fatalf("%s never seen", label)
		}
	}
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
