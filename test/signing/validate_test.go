package signing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
)

const (
	policedTopic = "org.fedoraproject.test.signing.policed" // only certProducer may sign it
	openTopic    = "org.fedoraproject.test.signing.open"    // not in the routing policy
)

// withField returns body (a JSON object) with key set to value, or removed
// when value is nil. Numbers keep their text, so the signature still covers
// every other field.
func withField(t testing.TB, body []byte, key string, value any) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if value == nil {
		delete(m, key)
	} else {
		m[key] = value
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The Python verifier itself tells good from bad: without this, the tests
// that rely on it could pass whatever the relay publishes.
func TestPythonVerifierRejectsBadBodies(t *testing.T) {
	ssldir := sslDir(t)
	body := fedmsgBody(t, openTopic, 1, map[string]any{"a": 1})
	signed := signBodies(t, ssldir, toSign{certProducer, body}, toSign{certUntrusted, body})
	good, untrusted := signed[0], signed[1]
	tests := []struct {
		name, want string
		body       []byte
	}{
		{"good", "", good},
		{"tampered", "bad_signature", withField(t, good, "msg", map[string]any{"a": 2})},
		{"wrong CA", "untrusted_cert", untrusted},
		{"unsigned", "unsigned", withField(t, good, "signature", nil)},
		{"signature not in 76-character lines", "signature_layout",
			withField(t, good, "signature", strings.ReplaceAll(string(mustField(t, good, "signature")), "\n", "")+"\n")},
	}
	var all [][]byte
	for _, tc := range tests {
		all = append(all, tc.body)
	}
	for i, v := range verifyBodies(t, ssldir, nil, all) {
		if v.Error != tests[i].want {
			t.Errorf("%s: verifier says %q, want %q", tests[i].name, v.Error, tests[i].want)
		}
	}
}

func mustField(t testing.TB, body []byte, key string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[key].(string)
	return s
}

// With validate_signatures, the relay passes properly signed messages and
// drops (and counts) unsigned, tampered, revoked, wrong-CA and
// policy-violating ones; malformed certificate fields never crash it.
func TestValidateSignatures(t *testing.T) {
	plain, _ := relayBinary(t)
	ssldir := sslDir(t)
	r := startRelay(t, plain, nil,
		"validate_signatures: true",
		"ca_cert: "+filepath.Join(ssldir, signingtest.CAFile),
		"crl: "+filepath.Join(ssldir, signingtest.CRLFile),
		fmt.Sprintf("routing_policy: {%s: [%s]}", policedTopic, signingtest.CommonName(certProducer)),
	)
	body := func(topic string, i int) []byte { return fedmsgBody(t, topic, i, map[string]any{"n": i}) }
	signed := signBodies(t, ssldir,
		toSign{certProducer, body(policedTopic, 1)},
		toSign{certProducer, body(openTopic, 2)},
		toSign{certRelay, body(openTopic, 3)},
		toSign{certRevoked, body(openTopic, 5)},
		toSign{certUntrusted, body(openTopic, 6)},
		toSign{certRotated, body(policedTopic, 7)},
		toSign{certProducer, body(policedTopic, 8)},
		toSign{certProducer, body(policedTopic, 9)},
	)
	good := signed[0]
	pemOf := func(der string) string {
		return base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\n" + der + "\n-----END CERTIFICATE-----\n"))
	}
	certField := mustField(t, good, "certificate")
	tests := []struct {
		name  string
		topic string
		body  []byte
		pass  bool
	}{
		{"signed, allowed by the policy", policedTopic, good, true},
		{"signed, topic without policy", openTopic, signed[1], true},
		{"signed by the relay's own cert, topic without policy", openTopic, signed[2], true},
		{"unsigned", openTopic, body(openTopic, 4), false},
		{"tampered payload", policedTopic, withField(t, good, "msg", map[string]any{"n": 666}), false},
		{"tampered topic", openTopic, withField(t, good, "topic", openTopic), false},
		{"revoked certificate", openTopic, signed[3], false},
		{"certificate from another CA", openTopic, signed[4], false},
		{"signer not in the routing policy", policedTopic, signed[5], false},
		{"crypto is not x509", policedTopic, withField(t, good, "crypto", "gpg"), false},
		{"signature not base64", policedTopic, withField(t, good, "signature", "%%% not base64 %%%"), false},
		{"certificate not base64", policedTopic, withField(t, good, "certificate", "%%% not base64 %%%\n"), false},
		{"certificate: PEM of garbage", policedTopic, withField(t, good, "certificate", pemOf("AAAAAAAAAAAA")), false},
		{"certificate: PEM of nothing", policedTopic, withField(t, good, "certificate", pemOf("")), false},
		{"certificate truncated", policedTopic, withField(t, good, "certificate", certField[:len(certField)/2]), false},
		{"certificate empty", policedTopic, withField(t, good, "certificate", ""), false},
		{"certificate a number", policedTopic, withField(t, good, "certificate", 42), false},
		{"certificate an object", policedTopic, withField(t, good, "certificate", map[string]any{"pem": certField}), false},
		{"certificate a list", policedTopic, withField(t, good, "certificate", []any{certField}), false},
		{"signed again after all that", policedTopic, signed[6], true},
	}
	var msgs, want [][][]byte
	drops := 0
	for _, tc := range tests {
		m := [][]byte{[]byte(tc.topic), tc.body}
		msgs = append(msgs, m)
		if tc.pass {
			want = append(want, m)
		} else {
			drops++
		}
	}
	dropsBefore := r.metric(t, dropped("signature"))
	got := exchange(t, r, ssldir, certProducer, 1, msgs)[0]

	passed := map[string]bool{}
	for _, m := range got {
		passed[string(m[1])] = true
	}
	for _, tc := range tests {
		if passed[string(tc.body)] != tc.pass {
			t.Errorf("%s: relayed %v, want %v\nbody %s", tc.name, passed[string(tc.body)], tc.pass, tc.body)
		}
	}
	if len(got) != len(want) {
		t.Errorf("relayed %d messages, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !bytes.Equal(bytes.Join(got[i], nil), bytes.Join(want[i], nil)) {
			t.Errorf("relayed message %d changed or out of order:\ngot  %q\nwant %q", i, got[i], want[i])
		}
	}
	if n := r.metric(t, dropped("signature")) - dropsBefore; n != float64(drops) {
		t.Errorf("%s went up by %v, want %d", dropped("signature"), n, drops)
	}
	// Still serving: alive, healthy, and a fresh exchange goes through.
	if r.Cmd.ProcessState != nil {
		t.Fatalf("relay exited: %v", r.Cmd.ProcessState)
	}
	resp, err := http.Get("http://" + r.metrics + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %s", resp.Status)
	}
	last := [][]byte{[]byte(policedTopic), signed[7]}
	if got := exchange(t, r, ssldir, certProducer, 1, [][][]byte{last})[0]; len(got) != 1 {
		t.Errorf("after the bad messages, a good one: %d relayed, want 1", len(got))
	}
}

// SIGHUP reloads the CRL too: once the CA revokes a producer's certificate
// and the new CRL is in place, its messages are dropped.
func TestSIGHUPReloadsCRL(t *testing.T) {
	plain, _ := relayBinary(t)
	ssldir := sslDir(t)
	crlPath := filepath.Join(ssldir, signingtest.CRLFile)
	r := startRelay(t, plain, nil,
		"validate_signatures: true",
		"ca_cert: "+filepath.Join(ssldir, signingtest.CAFile),
		"crl: "+crlPath,
	)
	signed := signBodies(t, ssldir,
		toSign{certProducer, fedmsgBody(t, openTopic, 1, map[string]any{"n": 1})},
		toSign{certProducer, fedmsgBody(t, openTopic, 2, map[string]any{"n": 2})},
	)
	// Probes and sentinels come from a certificate that stays good.
	send := func(body []byte) int {
		return len(exchange(t, r, ssldir, certRotated, 1, [][][]byte{{[]byte(openTopic), body}})[0])
	}
	if n := send(signed[0]); n != 1 {
		t.Fatalf("before the CRL update: %d relayed, want 1", n)
	}
	crl, err := pki.CRL(certRevoked, certProducer)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, crlPath, crl)
	before := r.metric(t, dropped("signature"))
	r.hangUp(t, "reloaded", 1)
	if n := send(signed[1]); n != 0 {
		t.Errorf("after the CRL update and SIGHUP: %d relayed, want 0 (certificate revoked)", n)
	}
	if n := r.metric(t, dropped("signature")) - before; n != 1 {
		t.Errorf("%s went up by %v, want 1", dropped("signature"), n)
	}
}
