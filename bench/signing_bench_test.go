package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// signedMessages is what one signed run pushes: signing costs an RSA-2048
// private-key operation per message, hundreds per second, so the unsigned
// run's count would take minutes.
const signedMessages = 3000

// signingRelayTarget runs the relay with --sign and a 2048-bit key pair from
// ssldir, otherwise configured as relayTarget.
func signingRelayTarget(ssldir string) func(b *testing.B, inbound, outbound string) *testutil.Process {
	return func(b *testing.B, inbound, outbound string) *testutil.Process {
		cfg := testutil.WriteFile(b, "relay.yaml", fmt.Sprintf(`
relay_inbound: %s
relay_outbound: %s
inbound_hwm: 1000000
outbound_hwm: 1000000
log_level: warn
ssldir: %s
certnames: {signing_relay: signing_relay}
`, inbound, outbound, ssldir))
		p := testutil.Start(b, testutil.Binary(b, "fedmsg-relay"), "--config", cfg, "--sign")
		waitListening(b, outbound)
		return p
	}
}

// BenchmarkSigningVsUnsignedRelay: 1 KiB fedmsg bodies from a pyzmq PUB
// through the relay signing with a 2048-bit RSA key (signedMessages per run)
// and through the unsigned relay (messages per run), alternating, median of
// three rounds each; reports both rates, CPU per message and the ratios.
func BenchmarkSigningVsUnsignedRelay(b *testing.B) {
	pki, err := signingtest.Generate(signingtest.Cert{Name: "signing_relay"})
	if err != nil {
		b.Fatal(err)
	}
	ssldir := b.TempDir()
	if err := pki.WriteDir(ssldir); err != nil {
		b.Fatal(err)
	}
	targets := []struct {
		target
		messages int
	}{
		{target{"unsigned", relayTarget}, messages},
		{target{"signed", signingRelayTarget(ssldir)}, signedMessages},
	}
	rates, cpus := map[string][]float64{}, map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			for _, t := range targets {
				res := throughputOf(b, t.target, t.messages)
				rates[t.name] = append(rates[t.name], res.rate)
				cpus[t.name] = append(cpus[t.name], res.cpuPerMsg)
				fmt.Fprintf(os.Stderr, "round %d %-8s relay %8.0f msg/s, %8.2f us CPU/msg (%d/%d delivered)\n",
					r+1, t.name, res.rate, res.cpuPerMsg*1e6, res.delivered, t.messages)
			}
		}
	}
	unsigned, signed := median(rates["unsigned"]), median(rates["signed"])
	unsignedCPU, signedCPU := median(cpus["unsigned"]), median(cpus["signed"])
	b.ReportMetric(unsigned, "unsigned-msg/s")
	b.ReportMetric(signed, "signed-msg/s")
	b.ReportMetric(signed/unsigned, "signed/unsigned")
	b.ReportMetric(signedCPU*1e6, "signed-us-CPU/msg")
	fmt.Fprintf(os.Stderr, "median (RSA-%d): unsigned relay %.0f msg/s, signed relay %.0f msg/s, throughput ratio signed/unsigned %.4f (1/%.0f)\n",
		signingtest.KeyBits, unsigned, signed, signed/unsigned, unsigned/signed)
	fmt.Fprintf(os.Stderr, "median CPU per message: unsigned %.2f us, signed %.2f us (%.0fx)\n",
		unsignedCPU*1e6, signedCPU*1e6, signedCPU/unsignedCPU)
}
