package signing

import (
	"encoding/json"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
)

// Benchmarks on the 1 KiB fedmsg body (testdata/fedmsg-1k.json) with the
// test PKI's 2048-bit keys. BenchmarkCanonical is the per-message cost
// without signing, the baseline for BenchmarkSign and BenchmarkVerify;
// BenchmarkStdlibRoundTrip (encoding/json decode + encode) puts it in scale.
// Run: go test -run '^$' -bench . -benchmem ./internal/signing

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkCanonical(b *testing.B) {
	body := readFedmsgBody(b)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := pyjson.Canonical(body); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

func BenchmarkStdlibRoundTrip(b *testing.B) {
	body := readFedmsgBody(b)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

func BenchmarkSign(b *testing.B) {
	signer := loadTestSigner(b, getPKI(b).writeSSLDir(b), certSigner)
	body := readFedmsgBody(b)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := signer.Sign(body); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

func BenchmarkVerify(b *testing.B) {
	dir := getPKI(b).writeSSLDir(b)
	signed, err := loadTestSigner(b, dir, certSigner).Sign(readFedmsgBody(b))
	if err != nil {
		b.Fatal(err)
	}
	verifier := loadTestVerifier(b, dir, testPolicy, true)
	b.SetBytes(int64(len(signed)))
	for b.Loop() {
		if err := verifier.Verify(topicGit, signed); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}
