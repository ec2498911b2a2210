package membudget

import (
	"sync"
	"testing"
	"time"
)

func TestReserveNeverExceedsLimit(t *testing.T) {
	b := New(1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := int64(0)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				if b.Reserve(7) {
					mu.Lock()
					peak = max(peak, b.Used())
					mu.Unlock()
					b.Release(7)
				}
			}
		}()
	}
	wg.Wait()
	if peak > 1000 || b.Used() != 0 {
		t.Fatalf("peak %d (limit 1000), used at end %d (want 0)", peak, b.Used())
	}
	if b.Reserve(1001) {
		t.Fatal("reserved more than the limit")
	}
}

func TestReleaseWakesWaiter(t *testing.T) {
	b := New(10)
	if !b.Reserve(10) {
		t.Fatal("reserve the whole budget")
	}
	ch := b.Changed()
	if b.Reserve(1) {
		t.Fatal("reserved beyond the limit")
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		b.Release(5)
	}()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("release did not wake the waiter")
	}
	if !b.Reserve(5) || b.Free() != 0 {
		t.Fatalf("after release: used %d, free %d", b.Used(), b.Free())
	}
}

func TestFairShare(t *testing.T) {
	b := New(1 << 20)
	if b.Fair() != 1<<20 {
		t.Fatalf("no holders: fair %d, want the whole budget", b.Fair())
	}
	for i := 0; i < 4; i++ {
		b.Join()
	}
	b.Leave()
	if got, want := b.Fair(), int64(1<<20)/3; got != want {
		t.Fatalf("3 holders: fair %d, want %d", got, want)
	}
}

// A part that finds no room asks for it; the reclaimer frees what a
// stranger held and the Release wakes the part waiting on Changed.
func TestReclaimFreesRoomForWaiter(t *testing.T) {
	b := New(100)
	if b.Reclaim(10) {
		t.Fatal("no reclaimer, yet something is coming")
	}
	if !b.Reserve(80) { // a stranger's unfinished message
		t.Fatal("reserve the stranger's bytes")
	}
	var asked int64
	b.SetReclaimer(func(need int64) bool {
		asked = need
		go b.Release(80) // as a disconnected peer's reader does, later
		return true
	})
	ch := b.Changed()
	if b.Reserve(50) {
		t.Fatal("reserved beyond the limit")
	}
	if !b.Reclaim(50) {
		t.Fatal("the reclaimer's bytes are not coming")
	}
	if asked != 50 {
		t.Fatalf("reclaimer asked for %d, want 50", asked)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the reclaimed release did not wake the waiter")
	}
	if !b.Reserve(50) {
		t.Fatalf("no room after reclaim: used %d", b.Used())
	}
}
