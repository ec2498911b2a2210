package relay

import (
	"encoding/json"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/transport"
)

// The names Fedora's nagios checks look for (check_fedmsg_consumers and
// check_fedmsg_producers against the relay's monitoring socket).
const (
	monitoringConsumerName = "RelayConsumer"
	monitoringProducerName = "MonitoringProducer"
)

// MonitoringOptions configure the status socket; it is off without Endpoint.
type MonitoringOptions struct {
	Endpoint   string
	SocketMode os.FileMode // of an ipc:// socket file
	Interval   time.Duration
}

// Monitoring publishes moksha-style status documents, as the original relay
// did, so the existing nagios plugins keep working.
type Monitoring struct {
	relay    *Relay
	log      hclog.Logger
	interval time.Duration
	pub      *transport.StatusPublisher
	quit     chan struct{}
	done     chan struct{}
}

// StartMonitoring binds the monitoring socket of Options.Monitoring and
// publishes a status every interval until Stop.
func (r *Relay) StartMonitoring(log hclog.Logger) (*Monitoring, error) {
	o := r.opts.Monitoring
	pub, err := r.sockets.OpenStatusPublisher(o.Endpoint, o.SocketMode)
	if err != nil {
		return nil, err
	}
	m := &Monitoring{relay: r, log: log, interval: o.Interval,
		pub: pub, quit: make(chan struct{}), done: make(chan struct{})}
	go m.loop()
	log.Info("publishing status", "endpoint", o.Endpoint, "interval", m.interval)
	return m, nil
}

func (m *Monitoring) loop() {
	defer close(m.done)
	defer m.pub.Close()
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		// The original publishes a single frame, no topic.
		if err := m.pub.Send(m.status()); err != nil {
			m.log.Warn("publish status", "error", err)
		}
		select {
		case <-m.quit:
			return
		case <-tick.C:
		}
	}
}

// status renders the document the nagios plugins read.
func (m *Monitoring) status() []byte {
	s := m.relay.stats
	var dropped uint64
	for _, c := range s.dropped {
		dropped += c.Value()
	}
	var received uint64
	for _, c := range s.received {
		received += c.Value()
	}
	doc := map[string]any{
		"consumers": []map[string]any{{
			"name":          monitoringConsumerName,
			"initialized":   m.relay.running.Load(),
			"backlog":       m.relay.backlog.Load(),
			"exceptions":    s.sendErrors.Value(),
			"topic":         "*",
			"jsonify":       false,
			"headcount_in":  received,
			"headcount_out": s.relayed.Value(),
			"dropped":       dropped,
		}},
		"producers": []map[string]any{{
			"name":        monitoringProducerName,
			"initialized": true,
			"exceptions":  0,
			"frequency":   m.interval.Seconds(),
			"last_ran":    float64(time.Now().UnixNano()) / 1e9,
		}},
	}
	b, _ := json.Marshal(doc) // maps of plain values always marshal
	return b
}

// Stop ends publishing and closes the socket.
func (m *Monitoring) Stop() {
	close(m.quit)
	<-m.done
}
