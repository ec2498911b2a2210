package clients

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/envelope"
	"github.com/fedora-infra/fedmsg-relay/internal/signing"
	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
)

// tailCase is one kind of message for fedmsg-tail --validate, and the
// reason it must give ("" for a valid message).
type tailCase struct {
	name, reason string
	topic, body  string
}

// newTailCases builds one message of each kind, signed in Go with the bus's
// keys. The valid one carries a raw C1 control character (U+009B, a
// terminal's CSI), which fedmsg-tail must print escaped.
func newTailCases(t *testing.T, b *signedBus) tailCases {
	t.Helper()
	builder := &envelope.Builder{TopicPrefix: "org.fedoraproject", Environment: "prod", Username: "tester"}
	build := func(certname, modname, subtopic, name string) (string, string) {
		topic, body, err := builder.Build(modname, subtopic, json.RawMessage(fmt.Sprintf(`{"case": %q, "log": "\u009b2J"}`, name)))
		if err != nil {
			t.Fatal(err)
		}
		if certname == "" {
			return topic, string(body)
		}
		signer, err := signing.LoadSigner(b.ssldir, certname)
		if err != nil {
			t.Fatal(err)
		}
		if body, err = signer.Sign(body); err != nil {
			t.Fatal(err)
		}
		return topic, string(body)
	}
	var cases tailCases
	add := func(name, reason, certname, modname, topic string) {
		topic, body := build(certname, modname, topic, name)
		cases = append(cases, tailCase{name, reason, topic, body})
	}
	add("good", "", shellCert(t), "logger", "log")
	add("wrong-cert", "routing_policy", shellCert(t), "git", "receive")
	// On a topic outside the policy (routing_nitpicky is off): only the
	// certificate fails.
	add("revoked", "revoked_cert", revokedCert, "open", "log")
	add("untrusted", "untrusted_cert", untrustedCert, "open", "log")
	add("unsigned", "unsigned", "", "logger", "log")
	_, signed := build(shellCert(t), "logger", "log", "tampered")
	cases = append(cases, tailCase{"tampered", "bad_signature", logTopic,
		strings.Replace(signed, `"log":"`, `"log":"changed `, 1)})
	return cases
}

// TestTailValidate: fedmsg-tail --validate marks exactly the messages that
// fedmsg's own validation rejects, with the reason; --drop-invalid leaves
// them out, here with the CA and CRL given as https:// locations whose
// cached copies are read (nothing is fetched: the host does not exist).
func TestTailValidate(t *testing.T) {
	b := newSignedBus(t)
	cases := newTailCases(t, b)
	var bodies []string
	for _, c := range cases {
		bodies = append(bodies, c.body)
	}
	for i, v := range b.validate(t, bodies...) {
		if (v.Error == "") != (cases[i].reason == "") {
			t.Fatalf("%s: fedmsg's validation says %q; the test expects reason %q", cases[i].name, v.Error, cases[i].reason)
		}
	}

	t.Run("mark", func(t *testing.T) {
		// 12 messages in a row: every case at least once.
		lines := tailWhilePublishing(t, b.relay, b.env(), []string{"--validate", "--count", "12"}, cases.message)
		seen := map[string]bool{}
		for _, line := range lines {
			c := caseOf(t, cases, line)
			seen[c.name] = true
			mark := "!! invalid " + c.reason + " ("
			if c.reason == "" && !strings.HasPrefix(line, c.topic+" ") ||
				c.reason != "" && (!strings.HasPrefix(line, mark) || !strings.Contains(line, "): "+c.topic+" ")) {
				t.Errorf("%s: line %q; want reason %q", c.name, line, c.reason)
			}
		}
		if len(seen) != len(cases) {
			t.Errorf("saw cases %v in:\n%s", seen, strings.Join(lines, "\n"))
		}
	})

	// The bus's fedmsg.d sets validate_signatures, as Fedora's did: a plain
	// tail then shows what fedmsg's tail showed, only valid messages.
	t.Run("validate_signatures in the config drops without a flag", func(t *testing.T) {
		lines := tailWhilePublishing(t, b.relay, b.env(), []string{"--count", "6"}, cases.message)
		for _, line := range lines {
			if c := caseOf(t, cases, line); c.reason != "" || strings.HasPrefix(line, "!!") {
				t.Errorf("%s printed as %q; only valid messages expected", c.name, line)
			}
		}
	})

	t.Run("--no-validate prints every message unmarked", func(t *testing.T) {
		lines := tailWhilePublishing(t, b.relay, b.env(), []string{"--no-validate", "--count", "12"}, cases.message)
		seen := map[string]bool{}
		for _, line := range lines {
			c := caseOf(t, cases, line)
			seen[c.name] = true
			if !strings.HasPrefix(line, c.topic+" ") {
				t.Errorf("%s: line %q; want it unmarked", c.name, line)
			}
		}
		if len(seen) != len(cases) {
			t.Errorf("saw cases %v; want all %d", seen, len(cases))
		}
	})

	t.Run("drop, CA and CRL from fedmsg's cache of https:// locations", func(t *testing.T) {
		cache := t.TempDir()
		for _, f := range []string{signingtest.CAFile, signingtest.CRLFile} {
			data, err := os.ReadFile(filepath.Join(b.ssldir, f))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, cache, f, string(data))
		}
		writeFile(t, b.conf, "zz-cache.py", fmt.Sprintf(`config = dict(
    ca_cert_location="https://fedmsg.invalid/ca.crt", ca_cert_cache=%q,
    crl_location="https://fedmsg.invalid/crl.pem", crl_cache=%q,
)
`, filepath.Join(cache, signingtest.CAFile), filepath.Join(cache, signingtest.CRLFile)))
		lines := tailWhilePublishing(t, b.relay, b.env(), []string{"--drop-invalid", "--json", "--count", "4"}, cases.message)
		for _, line := range lines {
			if c := caseOf(t, cases, line); c.reason != "" || !json.Valid([]byte(line)) {
				t.Errorf("%s printed as %q; only valid messages, as JSON, expected", c.name, line)
			}
		}
	})
}

// tailCases are the messages a test publishes, over and over.
type tailCases []tailCase

func (cases tailCases) message(k int) (string, []byte) {
	c := cases[k%len(cases)]
	return c.topic, []byte(c.body)
}

// caseOf returns the case whose message line is, checking that its control
// character arrived escaped.
func caseOf(t *testing.T, cases tailCases, line string) tailCase {
	t.Helper()
	if strings.ContainsRune(line, '\u009b') || !strings.Contains(line, `\u009b2J`) {
		t.Errorf("control character not escaped in %q", line)
	}
	for _, c := range cases {
		if strings.Contains(line, fmt.Sprintf(`"case":%q`, c.name)) {
			return c
		}
	}
	t.Fatalf("line %q is none of the cases", line)
	return tailCase{}
}
