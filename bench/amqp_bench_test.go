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
	bridged := configuredRelay(func(b *testing.B) string {
		return fmt.Sprintf("amqp:\n  url: %s\n  exchange: %s\n  spool_dir: %s", broker.URL(), bridgeExchange, b.TempDir())
	})
	brokerBefore, err := broker.CPUSeconds()
	if err != nil {
		b.Fatal(err)
	}
	m := compare(b, []target{{name: "bridge-off", start: relayTarget}, {name: "bridge-on", start: bridged}})
	off, on := m[0], m[1]
	// The broker's CPU over the whole run (its idle use in the off rounds
	// included) per bridged message: the share of the same cores it took.
	brokerAfter, err := broker.CPUSeconds()
	if err != nil {
		b.Fatal(err)
	}
	brokerPerMsg := (brokerAfter - brokerBefore) / float64(rounds*messages*b.N)
	b.ReportMetric(brokerPerMsg*1e6, "broker-cpu-us/msg")
	b.ReportMetric(off.rate, "off-msg/s")
	b.ReportMetric(on.rate, "on-msg/s")
	b.ReportMetric(on.rate/off.rate, "on/off")
	b.ReportMetric(off.cpuPerMsg/on.cpuPerMsg, "cpu-efficiency-on/off")
	fmt.Fprintf(os.Stderr, "median: bridge off %.0f msg/s, bridge on %.0f msg/s, throughput ratio on/off %.2f (target >= 0.90)\n", off.rate, on.rate, on.rate/off.rate)
	fmt.Fprintf(os.Stderr, "median relay CPU per message: bridge off %.2f us, bridge on %.2f us, efficiency ratio off/on %.2f\n", off.cpuPerMsg*1e6, on.cpuPerMsg*1e6, off.cpuPerMsg/on.cpuPerMsg)
	fmt.Fprintf(os.Stderr, "broker CPU per bridged message, on the same cores: %.2f us\n", brokerPerMsg*1e6)
}
