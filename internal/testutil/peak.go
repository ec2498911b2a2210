package testutil

import "time"

// SamplePeak calls sample every interval from its own goroutine until the
// returned stop is called; stop returns the largest value seen (the first
// sample is taken at once).
func SamplePeak(interval time.Duration, sample func() int64) (stop func() int64) {
	done, finished := make(chan struct{}), make(chan struct{})
	peak := sample()
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(interval):
				peak = max(peak, sample())
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		return peak
	}
}
