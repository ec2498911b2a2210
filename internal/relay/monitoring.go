package relay

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	zmq "github.com/pebbe/zmq4"
)

// The names Fedora's nagios checks look for (check_fedmsg_consumers and
// check_fedmsg_producers against the relay's monitoring socket).
const (
	monitoringConsumerName = "RelayConsumer"
	monitoringProducerName = "MonitoringProducer"
)

// Monitoring publishes moksha-style status documents, as the original relay
// did, so the existing nagios plugins keep working.
type Monitoring struct {
	relay    *Relay
	log      hclog.Logger
	endpoint string
	interval time.Duration
	sock     *zmq.Socket
	quit     chan struct{}
	done     chan struct{}
	sent     atomic.Uint64
}

// StartMonitoring binds the monitoring PUB socket, sets the mode of its ipc
// socket file and publishes a status every interval until Stop.
func (r *Relay) StartMonitoring(log hclog.Logger) (*Monitoring, error) {
	endpoint := r.cfg.MonitoringEndpoint
	sock, err := r.sockets.Context().NewSocket(zmq.PUB)
	if err != nil {
		return nil, fmt.Errorf("monitoring socket: %w", err)
	}
	if err := sock.SetLinger(0); err != nil {
		sock.Close()
		return nil, fmt.Errorf("monitoring socket: %w", err)
	}
	if err := sock.Bind(endpoint); err != nil {
		sock.Close()
		return nil, fmt.Errorf("bind %s: %w", endpoint, err)
	}
	if path, ok := strings.CutPrefix(endpoint, "ipc://"); ok && !strings.HasPrefix(path, "@") {
		// nagios (group nrpe) must be able to write to the socket file.
		if err := os.Chmod(path, os.FileMode(r.cfg.MonitoringSocketMode)); err != nil {
			sock.Close()
			return nil, fmt.Errorf("monitoring socket mode: %w", err)
		}
	}
	m := &Monitoring{relay: r, log: log, endpoint: endpoint, interval: r.cfg.MonitoringInterval,
		sock: sock, quit: make(chan struct{}), done: make(chan struct{})}
	go m.loop()
	log.Info("publishing status", "endpoint", endpoint, "interval", m.interval)
	return m, nil
}

func (m *Monitoring) loop() {
	defer close(m.done)
	defer m.sock.Close()
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		// The original publishes a single frame, no topic.
		if _, err := m.sock.SendBytes(m.status(), zmq.DONTWAIT); err != nil {
			m.log.Warn("publish status", "error", err)
		}
		m.sent.Add(1)
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
