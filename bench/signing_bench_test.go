package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
)

// signedMessages is what one signed run pushes: signing costs an RSA-2048
// private-key operation per message, hundreds per second, so the unsigned
// run's count would take minutes.
const signedMessages = 3000

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
	signing := configuredRelay(func(*testing.B) string {
		return fmt.Sprintf("ssldir: %s\ncertnames: {signing_relay: signing_relay}", ssldir)
	}, "--sign")
	m := compare(b, []target{
		{name: "unsigned", start: relayTarget},
		{name: "signed", start: signing, messages: signedMessages},
	})
	unsigned, signed := m[0], m[1]
	b.ReportMetric(unsigned.rate, "unsigned-msg/s")
	b.ReportMetric(signed.rate, "signed-msg/s")
	b.ReportMetric(signed.rate/unsigned.rate, "signed/unsigned")
	b.ReportMetric(signed.cpuPerMsg*1e6, "signed-us-CPU/msg")
	fmt.Fprintf(os.Stderr, "median (RSA-%d): unsigned relay %.0f msg/s, signed relay %.0f msg/s, throughput ratio signed/unsigned %.4f (1/%.0f)\n",
		signingtest.KeyBits, unsigned.rate, signed.rate, signed.rate/unsigned.rate, unsigned.rate/signed.rate)
	fmt.Fprintf(os.Stderr, "median CPU per message: unsigned %.2f us, signed %.2f us (%.0fx)\n",
		unsigned.cpuPerMsg*1e6, signed.cpuPerMsg*1e6, signed.cpuPerMsg/unsigned.cpuPerMsg)
}
