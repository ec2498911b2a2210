package signing

import (
	"bytes"
	"testing"
)

// FuzzVerify: Verify never panics on any topic and body, however malformed
// the certificate or signature, and every refusal has a Reason label. Seeds:
// testdata/fuzz/FuzzVerify plus bodies signed at start with the test PKI.
func FuzzVerify(f *testing.F) {
	dir := getPKI(f).writeSSLDir(f)
	verifier := loadTestVerifier(f, dir, testPolicy, true)
	for _, name := range []string{certSigner, certSecond, certRevoked, certExpired, certUntrusted} {
		signed, err := loadTestSigner(f, dir, name).Sign(message(topicGit, `{"n":1}`))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(topicGit, signed)
		f.Add(topicBodhi, signed)
		f.Add(topicGit, bytes.Replace(signed, []byte(`"n":1`), []byte(`"n":2`), 1))
		f.Add(topicGit, signed[:len(signed)/2])
	}
	f.Fuzz(func(t *testing.T, topic string, body []byte) {
		err := verifier.Verify(topic, body)
		if err != nil && Reason(err) == "other" {
			t.Fatalf("unclassified error %v", err)
		}
	})
}
