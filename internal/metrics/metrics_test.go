package metrics

import (
	"strings"
	"testing"
)

func TestWriteText(t *testing.T) {
	r := NewRegistry()
	r.Counter("relay_dropped_total", "Messages dropped.", "reason", "frames").Add(3)
	r.Counter("relay_dropped_total", "Messages dropped.", "reason", "oversize").Inc()
	// Same series again returns the same counter.
	r.Counter("relay_dropped_total", "Messages dropped.", "reason", "frames").Inc()
	r.Gauge("relay_connections", "Open connections.", "side", "inbound").Set(7000000)
	r.GaugeFunc("relay_up", "Always 1.", func() float64 { return 1 })

	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP relay_connections Open connections.
# TYPE relay_connections gauge
relay_connections{side="inbound"} 7000000
# HELP relay_dropped_total Messages dropped.
# TYPE relay_dropped_total counter
relay_dropped_total{reason="frames"} 4
relay_dropped_total{reason="oversize"} 1
# HELP relay_up Always 1.
# TYPE relay_up gauge
relay_up 1
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestKindClashPanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("x", "x")
	defer func() {
		if recover() == nil {
			t.Fatal("registering a counter name as a gauge did not panic")
		}
	}()
	r.Gauge("x", "x")
}
