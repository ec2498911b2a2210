package bench

import (
	"fmt"
	"os"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// bridgeExchange is the bridged relay's exchange, declared by the benchmark
// as the operator would. No queue is bound: the broker confirms and discards,
// so what is measured is the relay's side of the bridge, not queue storage.
const bridgeExchange = "zmq.topic"

// configuredRelayTarget runs the relay as relayTarget does, plus extraYAML.
func configuredRelayTarget(extraYAML func(b *testing.B) string) func(b *testing.B, inbound, outbound string) *testutil.Process {
	return func(b *testing.B, inbound, outbound string) *testutil.Process {
		cfg := testutil.WriteFile(b, "relay.yaml", fmt.Sprintf(`
relay_inbound: %s
relay_outbound: %s
inbound_hwm: 1000000
outbound_hwm: 1000000
log_level: warn
%s
`, inbound, outbound, extraYAML(b)))
		p := testutil.Start(b, testutil.Binary(b, "fedmsg-relay"), "--config", cfg)
		waitListening(b, outbound)
		return p
	}
}

// startBroker boots a RabbitMQ node for one benchmark (no TestMain, so
// `go test ./bench` without -bench boots none). Without rabbitmq-server or
// root the benchmark is skipped, except under CI=true.
func startBroker(b *testing.B) *amqptest.Broker {
	broker, err := amqptest.Start(amqptest.Options{})
	if err != nil {
		if testutil.InCI() {
			b.Fatalf("RabbitMQ broker unavailable (CI=true): %v", err)
		}
		b.Skipf("RabbitMQ broker unavailable: %v", err)
	}
	b.Cleanup(broker.Shutdown)
	return broker
}

// BenchmarkAMQPBridgeOnVsOff: 1 KiB fedmsg bodies from a pyzmq PUB through
// the relay with the bridge to a real RabbitMQ on (spool on disk, pipelined
// confirms) and off, alternating, median of three rounds each. Reports the
// subscriber's msg/s, the relay's CPU per message and the ratios. Target
// on/off >= 0.9. The broker shares the machine's cores with the relay here,
// unlike in production.
func BenchmarkAMQPBridgeOnVsOff(b *testing.B) {
	broker := startBroker(b)
	amqptest.WithChannel(b, broker.URL(), func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(bridgeExchange, amqp.ExchangeTopic, true, false, false, false, nil)
	})
	bridged := configuredRelayTarget(func(b *testing.B) string {
		return fmt.Sprintf("amqp:\n  url: %s\n  exchange: %s\n  spool_dir: %s\n", broker.URL(), bridgeExchange, b.TempDir())
	})
	targets := []target{{"bridge-off", relayTarget}, {"bridge-on", bridged}}
	rates, cpus := map[string][]float64{}, map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			for _, t := range targets {
				res := throughput(b, t)
				rates[t.name] = append(rates[t.name], res.rate)
				cpus[t.name] = append(cpus[t.name], res.cpuPerMsg)
				fmt.Fprintf(os.Stderr, "round %d %-10s %8.0f msg/s, %5.2f us CPU/msg (%d/%d delivered)\n",
					r+1, t.name, res.rate, res.cpuPerMsg*1e6, res.delivered, messages)
			}
		}
	}
	off, on := median(rates["bridge-off"]), median(rates["bridge-on"])
	offCPU, onCPU := median(cpus["bridge-off"]), median(cpus["bridge-on"])
	b.ReportMetric(off, "off-msg/s")
	b.ReportMetric(on, "on-msg/s")
	b.ReportMetric(on/off, "on/off")
	b.ReportMetric(offCPU/onCPU, "cpu-efficiency-on/off")
	fmt.Fprintf(os.Stderr, "median: bridge off %.0f msg/s, bridge on %.0f msg/s, throughput ratio on/off %.2f (target >= 0.90)\n", off, on, on/off)
	fmt.Fprintf(os.Stderr, "median relay CPU per message: bridge off %.2f us, bridge on %.2f us, efficiency ratio off/on %.2f\n", offCPU*1e6, onCPU*1e6, offCPU/onCPU)
}
