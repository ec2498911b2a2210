// Package metrics keeps the relay's counters and gauges and renders them in the
// Prometheus text exposition format. It is deliberately tiny: a few dozen series,
// lock-free updates on the hot path, no dependency on the Prometheus client.
package metrics

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter is a monotonically increasing value, safe for concurrent use.
type Counter struct{ v atomic.Uint64 }

// Add increases the counter by n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc increases the counter by one.
func (c *Counter) Inc() { c.v.Add(1) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down, safe for concurrent use.
type Gauge struct{ v atomic.Int64 }

// Add changes the gauge by n (which may be negative).
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Set replaces the gauge's value.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }

type kind string

const (
	kindCounter kind = "counter"
	kindGauge   kind = "gauge"
)

// series is one line of output: a metric family name, its labels and a value source.
type series struct {
	labels string // rendered `{k="v",...}` or ""
	value  func() float64
}

type family struct {
	name, help string
	kind       kind
	series     []series
	collect    func() []Sample // series listed at scrape time, after the fixed ones
}

// Sample is one series a collector lists at scrape time.
type Sample struct {
	Labels []string // label pairs ("key", "value", ...)
	Value  float64
}

// Registry holds named metric families. Registration takes a lock; updates do not.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
	owners   map[string]any // series key -> the Counter or Gauge behind it
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{families: map[string]*family{}, owners: map[string]any{}}
}

// Counter registers (or returns the existing) counter with the given name, help
// text and label pairs ("key", "value", ...).
func (r *Registry) Counter(name, help string, labelPairs ...string) *Counter {
	c := &Counter{}
	if existing := r.register(name, help, kindCounter, labelPairs, func() float64 { return float64(c.Value()) }, c); existing != nil {
		return existing.(*Counter)
	}
	return c
}

// Gauge registers (or returns the existing) gauge with the given name, help text
// and label pairs.
func (r *Registry) Gauge(name, help string, labelPairs ...string) *Gauge {
	g := &Gauge{}
	if existing := r.register(name, help, kindGauge, labelPairs, func() float64 { return float64(g.Value()) }, g); existing != nil {
		return existing.(*Gauge)
	}
	return g
}

// GaugeFunc registers a gauge whose value is computed at scrape time.
func (r *Registry) GaugeFunc(name, help string, fn func() float64, labelPairs ...string) {
	r.register(name, help, kindGauge, labelPairs, fn, nil)
}

// CounterFunc registers a counter whose value is read at scrape time from a
// count kept elsewhere.
func (r *Registry) CounterFunc(name, help string, fn func() float64, labelPairs ...string) {
	r.register(name, help, kindCounter, labelPairs, fn, nil)
}

// Collect registers a family whose series come and go (one per connected
// peer, say): fn lists them at each scrape. The caller bounds how many.
func (r *Registry) Collect(name, help string, counter bool, fn func() []Sample) {
	k := kindGauge
	if counter {
		k = kindCounter
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.families[name]; ok {
		panic(fmt.Sprintf("metrics: %s registered twice", name))
	}
	r.families[name] = &family{name: name, help: help, kind: k, collect: fn}
}

func (r *Registry) register(name, help string, k kind, labelPairs []string, value func() float64, owner any) any {
	if len(labelPairs)%2 != 0 {
		panic(fmt.Sprintf("metrics: %s: odd number of label strings", name))
	}
	labels := renderLabels(labelPairs)
	key := name + labels
	r.mu.Lock()
	defer r.mu.Unlock()
	// Registering the same series twice returns the first object.
	if existing, ok := r.owners[key]; ok {
		return existing
	}
	f, ok := r.families[name]
	if !ok {
		f = &family{name: name, help: help, kind: k}
		r.families[name] = f
	}
	if f.kind != k || f.collect != nil {
		panic(fmt.Sprintf("metrics: %s registered as %s and %s", name, f.kind, k))
	}
	f.series = append(f.series, series{labels: labels, value: value})
	if owner != nil {
		r.owners[key] = owner
	}
	return nil
}

func renderLabels(pairs []string) string {
	if len(pairs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", pairs[i], pairs[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// WriteText writes every family in the Prometheus text format (version 0.0.4),
// families sorted by name so that output is stable.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	sort.Strings(names)
	fams := make([]family, 0, len(names))
	for _, n := range names {
		f := r.families[n]
		fams = append(fams, family{name: f.name, help: f.help, kind: f.kind, series: append([]series(nil), f.series...), collect: f.collect})
	}
	r.mu.Unlock()

	for _, f := range fams {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.kind); err != nil {
			return err
		}
		for _, s := range f.series {
			if _, err := fmt.Fprintf(w, "%s%s %s\n", f.name, s.labels, strconv.FormatFloat(s.value(), 'f', -1, 64)); err != nil {
				return err
			}
		}
		if f.collect == nil {
			continue
		}
		for _, s := range f.collect() {
			if _, err := fmt.Fprintf(w, "%s%s %s\n", f.name, renderLabels(s.Labels), strconv.FormatFloat(s.Value, 'f', -1, 64)); err != nil {
				return err
			}
		}
	}
	return nil
}
