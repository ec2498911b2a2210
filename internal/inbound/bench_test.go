package inbound

import (
	"bytes"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/zmtp"
)

// BenchmarkReadTake streams fedmsg-sized messages (a topic and a 1 KiB
// body) from one producer over loopback TCP and takes and releases them in
// batches as the forwarding loop does: the Go engine's own cost per
// message, without validation or libzmq. cpu-ns/msg is the process's CPU
// time (the producer's writes included) over the messages.
func BenchmarkReadTake(b *testing.B) {
	wake := make(chan struct{}, 1)
	s, ep, _ := listen(b, func(o *Options) {
		o.Notify = func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	c := rawPeer(b, ep)
	const perChunk = 64
	var chunk bytes.Buffer
	topic, body := []byte("org.fedoraproject.prod.bench.message"), bytes.Repeat([]byte("b"), 1024)
	for range perChunk {
		chunk.Write(append([]byte{zmtp.FlagMore, byte(len(topic))}, topic...))
		chunk.Write(append(frameHeader(0, len(body)), body...))
	}
	go func() {
		for sent := 0; sent < b.N; sent += perChunk {
			if _, err := c.Write(chunk.Bytes()); err != nil {
				return
			}
		}
	}()
	batch := make([]Message, 256)
	before := cpuTime(b)
	b.ResetTimer()
	for got := 0; got < b.N; {
		n := s.Take(batch, 4<<20)
		if n == 0 {
			select {
			case <-wake:
			case <-time.After(10 * time.Second):
				b.Fatalf("took %d of %d messages", got, b.N)
			}
			continue
		}
		got += n
		s.Release(batch[:n])
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/msg")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
