package signing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	topicGit    = "org.fedoraproject.prod.git.receive"
	topicBodhi  = "org.fedoraproject.prod.bodhi.update"
	topicLogger = "org.fedoraproject.prod.logger.log" // in no policy
)

var testPolicy = map[string][]string{
	topicGit:   {certSigner + testCN},
	topicBodhi: {certSecond + testCN, "somebody-else" + testCN},
}

func loadTestVerifier(t testing.TB, ssldir string, policy map[string][]string, nitpicky bool) *Verifier {
	t.Helper()
	v, err := LoadVerifier(filepath.Join(ssldir, "ca.crt"), filepath.Join(ssldir, "crl.pem"), policy, nitpicky)
	if err != nil {
		t.Fatalf("LoadVerifier: %v", err)
	}
	return v
}

func message(topic, payload string) []byte {
	return fmt.Appendf(nil, `{"topic":%q,"msg":%s,"i":1,"timestamp":1764158400,"msg_id":"2026-x","username":"apache"}`, topic, payload)
}

// TestVerifyAgreesWithPython signs messages with each test certificate, both
// in Go and with the Python reference (as fedmsg.publish and as the Python
// signing relay write them), damages some, and checks that Go's Verify and
// the Python validator (x509_ng.validate with pyOpenSSL) give the same verdict.
func TestVerifyAgreesWithPython(t *testing.T) {
	dir := getPKI(t).writeSSLDir(t)
	// Bodies written by moksha's json.dumps have a space after the colon.
	tamper := func(b []byte) []byte {
		return bytes.Replace(bytes.Replace(b, []byte(`"n":1`), []byte(`"n":2`), 1), []byte(`"n": 1`), []byte(`"n": 2`), 1)
	}
	cases := []struct {
		name, certname, topic string
		damage                func([]byte) []byte
		want, wantNitpicky    string // Reason labels, "" for valid
	}{
		{"allowed signer", certSigner, topicGit, nil, "", ""},
		{"second signer on its topic", certSecond, topicBodhi, nil, "", ""},
		{"signer not in topic's list", certSecond, topicGit, nil, "routing_policy", "routing_policy"},
		{"topic without policy", certSigner, topicLogger, nil, "", "routing_policy"},
		{"revoked", certRevoked, topicGit, nil, "revoked_cert", "revoked_cert"},
		{"expired", certExpired, topicGit, nil, "expired_cert", "expired_cert"},
		{"other CA", certUntrusted, topicGit, nil, "untrusted_cert", "untrusted_cert"},
		{"payload changed", certSigner, topicGit, tamper, "bad_signature", "bad_signature"},
		{"topic changed", certSigner, topicGit, func(b []byte) []byte {
			return bytes.Replace(b, []byte(topicGit), []byte(topicLogger), 1)
		}, "bad_signature", "bad_signature"},
	}

	var bodies [][]byte // unsigned, one per case
	var goSigned [][]byte
	var pyRequests []string
	for _, tc := range cases {
		body := message(tc.topic, `{"n":1,"text":"caf\u00e9 \ud83d\ude00","x":1.5e16}`)
		bodies = append(bodies, body)
		signed, err := loadTestSigner(t, dir, tc.certname).Sign(body)
		if err != nil {
			t.Fatal(err)
		}
		goSigned = append(goSigned, signed)
		for _, style := range []string{"publish", "moksha"} {
			pyRequests = append(pyRequests, signRequest(tc.certname, style, body))
		}
	}
	pySigned := runReference(t, pyRequests, "sign", dir)

	// Every signed body, in case order: Go, Python publish, Python moksha.
	type signedBody struct {
		origin string
		body   []byte
	}
	var all []signedBody
	for i, tc := range cases {
		for j, s := range []struct {
			origin string
			body   string
		}{{"go", base64.StdEncoding.EncodeToString(goSigned[i])}, {"python-publish", pySigned[2*i]}, {"python-moksha", pySigned[2*i+1]}} {
			raw, err := base64.StdEncoding.DecodeString(s.body)
			if err != nil {
				t.Fatalf("%s: Python answered %q", tc.name, s.body)
			}
			if tc.damage != nil {
				raw = tc.damage(raw)
			}
			if j == 1 && !bytes.Equal(raw, goSigned[i]) && tc.damage == nil {
				t.Errorf("%s: Go and fedmsg.publish bodies differ:\n%s\n%s", tc.name, goSigned[i], raw)
			}
			all = append(all, signedBody{s.origin, raw})
		}
	}
	requests := make([]string, len(all))
	for i, s := range all {
		requests[i] = verifyRequest(s.body)
	}
	policy, _ := json.Marshal(testPolicy)
	for _, nitpicky := range []bool{false, true} {
		verifier := loadTestVerifier(t, dir, testPolicy, nitpicky)
		flag := map[bool]string{false: "0", true: "1"}[nitpicky]
		answers := runReference(t, requests, "verify", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "crl.pem"), string(policy), flag)
		for i, s := range all {
			tc := cases[i/3]
			want := tc.want
			if nitpicky {
				want = tc.wantNitpicky
			}
			topic := tc.topic
			goVerdict := Reason(verifier.Verify(topic, s.body))
			pyVerdict := strings.TrimPrefix(strings.TrimPrefix(answers[i], "ok"), "fail ")
			if goVerdict != want || pyVerdict != want {
				t.Errorf("%s (%s-signed, nitpicky=%v): Go %q, Python %q, want %q", tc.name, s.origin, nitpicky, goVerdict, pyVerdict, want)
			}
		}
	}
}

// TestVerifyReasons covers what Python validators reject (or crash on) that a
// well-behaved signer never produces: missing and mistyped fields, garbage
// base64, certificates that are not PEM, not DER, not RSA, and stale CRLs.
func TestVerifyReasons(t *testing.T) {
	p := getPKI(t)
	dir := p.writeSSLDir(t)
	verifier := loadTestVerifier(t, dir, testPolicy, false)
	signed, err := loadTestSigner(t, dir, certSigner).Sign(message(topicGit, `{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(signed, &fields); err != nil {
		t.Fatal(err)
	}
	with := func(name, value string) []byte {
		f := make(map[string]json.RawMessage, len(fields))
		for k, v := range fields {
			f[k] = v
		}
		if value == "" {
			delete(f, name)
		} else {
			f[name] = json.RawMessage(value)
		}
		b, _ := json.Marshal(f)
		return b
	}
	b64 := func(data []byte) string {
		s, _ := json.Marshal(splitLines(base64.StdEncoding.EncodeToString(data)))
		return string(s)
	}
	ecCert := b64(certPEM(p.certs[certECDSA].cert))
	truncatedCert := b64(certPEM(p.certs[certSigner].cert)[:200])
	for _, tc := range []struct {
		name  string
		topic string
		body  []byte
		want  error
	}{
		{"valid", topicGit, signed, nil},
		{"frame topic differs and is not allowed", topicBodhi, signed, ErrRoutingPolicy},
		{"no signature", topicGit, with("signature", ""), ErrUnsigned},
		{"no certificate", topicGit, with("certificate", ""), ErrUnsigned},
		{"gpg crypto", topicGit, with("crypto", `"gpg"`), ErrUnsigned},
		{"signature not a string", topicGit, with("signature", `42`), ErrBadSignature},
		{"signature not base64", topicGit, with("signature", `"@@@"`), ErrBadSignature},
		{"signature not ASCII", topicGit, with("signature", `"\u00e9"`), ErrBadSignature},
		{"signature truncated", topicGit, with("signature", `"QUJD\n"`), ErrBadSignature},
		{"certificate not a string", topicGit, with("certificate", `{}`), ErrMalformedCert},
		{"certificate not base64", topicGit, with("certificate", `"!!"`), ErrMalformedCert},
		{"certificate not PEM", topicGit, with("certificate", b64([]byte("hello"))), ErrMalformedCert},
		{"certificate truncated", topicGit, with("certificate", truncatedCert), ErrMalformedCert},
		{"certificate bad DER", topicGit, with("certificate", b64([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))), ErrMalformedCert},
		{"ECDSA certificate", topicGit, with("certificate", ecCert), ErrMalformedCert},
		{"not an object", topicGit, []byte(`[1]`), ErrNotObject},
		{"not JSON", topicGit, []byte(`{`), ErrInvalidJSON},
	} {
		err := verifier.Verify(tc.topic, tc.body)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}

	// Time moves on: first the CRL goes stale, then the certificates expire.
	for _, tc := range []struct {
		after time.Duration
		want  error
	}{
		{-2 * time.Hour, ErrStaleCRL},
		{30 * time.Minute, nil},
		{2 * time.Hour, ErrExpiredCert},
		{48 * time.Hour, ErrStaleCRL},
	} {
		v := *verifier
		v.now = func() time.Time { return time.Now().Add(tc.after) }
		if err := v.Verify(topicGit, signed); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("now%+v: Verify = %v, want %v", tc.after, err, tc.want)
		}
	}
}

func TestLoadVerifierErrors(t *testing.T) {
	p := getPKI(t)
	dir := p.writeSSLDir(t)
	ca, crl := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "crl.pem")
	otherCRL := filepath.Join(dir, "other-crl.pem")
	// A CRL signed by the other CA: same issuer name, wrong key.
	if err := os.WriteFile(otherCRL, bytes.Replace(p.crl, []byte("A"), []byte("B"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ca, crl, want string
	}{
		{"missing CA", filepath.Join(dir, "nope.crt"), crl, "no such file"},
		{"leaf as CA", filepath.Join(dir, certSigner+".crt"), crl, "does not allow certificate signing"},
		{"missing CRL", ca, filepath.Join(dir, "nope.pem"), "no such file"},
		{"CRL is a certificate", ca, ca, "want X509 CRL"},
		{"CRL damaged", ca, otherCRL, "CRL"},
	} {
		_, err := LoadVerifier(tc.ca, tc.crl, nil, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: LoadVerifier = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// Without a CRL, a revoked certificate passes, as in fedmsg without crl_location.
	v, err := LoadVerifier(ca, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := loadTestSigner(t, dir, certRevoked).Sign(message(topicGit, `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(topicGit, signed); err != nil {
		t.Errorf("no CRL: Verify = %v", err)
	}
}

func TestReason(t *testing.T) {
	labels := Reasons()
	for _, r := range reasons {
		wrapped := fmt.Errorf("context: %w", r.err)
		if got := Reason(wrapped); got != r.label || !slices.Contains(labels, got) {
			t.Errorf("Reason(%v) = %q, want %q", wrapped, got, r.label)
		}
	}
	if Reason(nil) != "" || Reason(errors.New("x")) != "other" {
		t.Errorf("Reason(nil) = %q, Reason(other) = %q", Reason(nil), Reason(errors.New("x")))
	}
}
