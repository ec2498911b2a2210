package signing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
	"github.com/fedora-infra/fedmsg-relay/internal/pyjson/pyjsontest"
)

func loadTestSigner(t testing.TB, ssldir, certname string) *Signer {
	t.Helper()
	s, err := LoadSigner(ssldir, certname)
	if err != nil {
		t.Fatalf("LoadSigner(%s): %v", certname, err)
	}
	return s
}

func readFedmsgBody(t testing.TB) []byte {
	t.Helper()
	body, err := os.ReadFile("testdata/fedmsg-1k.json")
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestLoadSignerErrors(t *testing.T) {
	p := getPKI(t)
	dir := p.writeSSLDir(t)
	// A key pair whose halves do not match, and files that are not PEM.
	copyFile(t, filepath.Join(dir, certSecond+".crt"), filepath.Join(dir, "mismatch.crt"))
	copyFile(t, filepath.Join(dir, certSigner+".key"), filepath.Join(dir, "mismatch.key"))
	copyFile(t, filepath.Join(dir, certSigner+".key"), filepath.Join(dir, "garbage.key"))
	if err := os.WriteFile(filepath.Join(dir, "garbage.crt"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nokey.crt"), certPEM(p.ca), 0o600); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, certSigner+".key"))
	if err != nil {
		t.Fatal(err)
	}
	keyBody := string(bytes.Split(keyPEM, []byte("\n"))[1]) // a line of key material

	for _, tc := range []struct {
		certname, want string
	}{
		{"missing", "missing.key: no such file"},
		{"nokey", "nokey.key: no such file"},
		{"mismatch", "does not hold the public key"},
		{"garbage", "no PEM certificate found"},
		{certECDSA, "fedmsg signs with RSA"},
		{"", "non-empty file name"},
		{"../" + certSigner, "non-empty file name"},
	} {
		_, err := LoadSigner(dir, tc.certname)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadSigner(%q) = %v, want an error containing %q", tc.certname, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), keyBody) {
			t.Errorf("LoadSigner(%q) error leaks key material: %v", tc.certname, err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// signingBodies is what the golden tests sign: the 1 KiB fedmsg body, small
// edge cases, and the corpus's objects that Canonical accepts and that carry
// no signature or certificate yet (fedmsg would sign over those).
func signingBodies(t testing.TB, n int) [][]byte {
	t.Helper()
	bodies := [][]byte{
		readFedmsgBody(t),
		[]byte(`{}`),
		[]byte(`{"crypto":"gpg","topic":"org.fedoraproject.prod.logger.log","msg":{"log":"caf\u00e9 \ud83d\ude00 a/b"}}`),
		[]byte(`{"msg":{"f":[1.5,1e16,-0.0,1e-05],"big":123456789012345678901234567890},"a":1,"a":2}`),
	}
	for _, body := range pyjsontest.Corpus(99, 4*n) {
		if len(bodies) == n {
			break
		}
		msg, err := pyjson.Parse(body)
		if err != nil || msg.Kind != pyjson.KindObject {
			continue
		}
		if _, has := msg.Get("signature"); has {
			continue
		}
		if _, has := msg.Get("certificate"); has {
			continue
		}
		bodies = append(bodies, body)
	}
	return bodies
}

// TestSignMatchesPython: for every body, Sign's output is byte for byte what
// fedmsg (x509_ng.sign, then fedmsg.publish's json.dumps) publishes with the
// same key. PKCS#1 v1.5 signatures are deterministic, so this pins the
// canonical bytes, the digest, the padding, the base64 splitting and the
// certificate field all at once.
func TestSignMatchesPython(t *testing.T) {
	dir := getPKI(t).writeSSLDir(t)
	signer := loadTestSigner(t, dir, certSigner)
	bodies := signingBodies(t, 300)
	requests := make([]string, len(bodies))
	for i, body := range bodies {
		requests[i] = signRequest(certSigner, "publish", body)
	}
	answers := runReference(t, requests, "sign", dir)
	for i, body := range bodies {
		got, err := signer.Sign(body)
		if err != nil {
			t.Fatalf("Sign(%.200q): %v", body, err)
		}
		want, err := base64.StdEncoding.DecodeString(answers[i])
		if err != nil {
			t.Fatalf("body %d: Python answered %.200q", i, answers[i])
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("body %d %.200q:\n Go     %.400q\n Python %.400q", i, body, got, want)
		}
	}
	t.Logf("%d bodies signed identically by Go and Python", len(bodies))
}

func TestSignFields(t *testing.T) {
	dir := getPKI(t).writeSSLDir(t)
	signer := loadTestSigner(t, dir, certSigner)
	// An already signed body is signed afresh, not over its old signature.
	first, err := signer.Sign([]byte(`{"topic":"t","msg":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	again, err := signer.Sign(first)
	if err != nil || !bytes.Equal(again, first) {
		t.Fatalf("re-signing changed the body:\n%s\n%s (%v)", first, again, err)
	}
	var fields map[string]any
	if err := json.Unmarshal(first, &fields); err != nil {
		t.Fatal(err)
	}
	if fields["crypto"] != "x509" {
		t.Errorf("crypto = %v", fields["crypto"])
	}
	for _, name := range []string{"signature", "certificate"} {
		value, _ := fields[name].(string)
		lines := strings.Split(strings.TrimSuffix(value, "\n"), "\n")
		if !strings.HasSuffix(value, "\n") || len(lines) < 2 {
			t.Fatalf("%s = %q: want 76-character lines ending in a newline", name, value)
		}
		for i, line := range lines {
			if len(line) != 76 && i != len(lines)-1 || len(line) > 76 {
				t.Errorf("%s line %d has %d characters", name, i, len(line))
			}
		}
	}
	pemBytes, _ := base64.StdEncoding.DecodeString(strings.ReplaceAll(fields["certificate"].(string), "\n", ""))
	if want := certPEM(getPKI(t).certs[certSigner].cert); !bytes.Equal(pemBytes, want) {
		t.Errorf("certificate field decodes to\n%s\nwant the PEM without easy-rsa's text preamble\n%s", pemBytes, want)
	}
}

func TestSignRefuses(t *testing.T) {
	signer := loadTestSigner(t, getPKI(t).writeSSLDir(t), certSigner)
	for _, tc := range []struct {
		body string
		want error
	}{
		{`[1,2]`, ErrNotObject},
		{`"x"`, ErrNotObject},
		{`{"a":NaN}`, ErrNotReproducible},
		{`{"a":1e400}`, ErrNotReproducible},
		{`{"a":` + strings.Repeat("1", 4301) + `}`, ErrNotReproducible},
		{`{"a":1`, ErrInvalidJSON},
		{"{\"a\":\"\xff\"}", ErrInvalidJSON},
	} {
		if _, err := signer.Sign([]byte(tc.body)); !errors.Is(err, tc.want) {
			t.Errorf("Sign(%.60q) = %v, want %v", tc.body, err, tc.want)
		}
	}
}

// TestSignVerifyConcurrent: one Signer and one Verifier shared by goroutines
// (run with -race to check the claim that they are safe for concurrent use).
func TestSignVerifyConcurrent(t *testing.T) {
	dir := getPKI(t).writeSSLDir(t)
	signer := loadTestSigner(t, dir, certSigner)
	verifier := loadTestVerifier(t, dir, nil, false)
	body := readFedmsgBody(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				signed, err := signer.Sign(body)
				if err == nil {
					err = verifier.Verify("org.fedoraproject.prod.git.receive", signed)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
