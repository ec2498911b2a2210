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

func TestCollectListsSeriesAtScrape(t *testing.T) {
	r := NewRegistry()
	peers := map[string]float64{"10.0.0.1:5000": 3}
	r.Collect("relay_peer_dropped_total", "Dropped per peer.", true, func() []Sample {
		var out []Sample
		for p, v := range peers {
			out = append(out, Sample{Labels: []string{"peer", p}, Value: v})
		}
		return out
	})
	n := 7.0
	r.CounterFunc("relay_sent_total", "Sent.", func() float64 { return n })
	scrape := func() string {
		var b strings.Builder
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	want := `# HELP relay_peer_dropped_total Dropped per peer.
# TYPE relay_peer_dropped_total counter
relay_peer_dropped_total{peer="10.0.0.1:5000"} 3
# HELP relay_sent_total Sent.
# TYPE relay_sent_total counter
relay_sent_total 7
`
	if got := scrape(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	delete(peers, "10.0.0.1:5000") // the peer left: its series goes with it
	if got := scrape(); strings.Contains(got, "10.0.0.1") {
		t.Fatalf("a departed peer's series is still listed:\n%s", got)
	}
}
