package metrics

import (
	"errors"
	"io"
	"net/http"
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

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_total", "X.").Add(2)
	healthy := error(nil)
	srv, err := Listen("127.0.0.1:0", Handler(r, func() error { return healthy }), func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + srv.Addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "x_total 2\n") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	healthy = errors.New("forwarding loop stalled")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "stalled") {
		t.Errorf("/healthz when unhealthy = %d %q", code, body)
	}
}
