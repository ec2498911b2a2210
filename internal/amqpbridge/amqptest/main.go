package amqptest

import (
	"flag"
	"os"
	"testing"
)

var (
	shared    *Broker
	sharedErr error // why there is no shared broker
)

// Main runs a package's tests with one broker shared by all of them (booting
// RabbitMQ takes seconds); tests get it with Require. Fuzzing runs without a
// broker, because every fuzz worker process runs TestMain. Use it as
// `func TestMain(m *testing.M) { os.Exit(amqptest.Main(m, opts)) }`.
func Main(m *testing.M, opts Options) int {
	flag.Parse()
	if fuzzing() {
		return m.Run()
	}
	shared, sharedErr = Start(opts)
	code := m.Run()
	if shared != nil {
		shared.Shutdown()
	}
	return code
}

func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// Require returns the shared broker. It skips the test when RabbitMQ is not
// available, except under CI=true, where a missing broker is a failure.
func Require(tb testing.TB) *Broker {
	tb.Helper()
	if shared != nil {
		return shared
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("RabbitMQ broker unavailable (CI=true): %v", sharedErr)
	}
	tb.Skipf("RabbitMQ broker unavailable: %v", sharedErr)
	return nil
}
