package signing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

const topic = "org.fedoraproject.test.signing.relay"

func signingConfig(ssldir string) string {
	return fmt.Sprintf("ssldir: %s\ncertnames: {signing_relay: %s}", ssldir, certRelay)
}

// canonicalEdgeCases are bodies whose canonical JSON is easy to get wrong:
// non-ASCII and astral characters, escapes, big integers, Python float
// formatting, nesting, duplicate keys, unsorted keys and spaces.
var canonicalEdgeCases = []string{
	`{"topic":"` + topic + `","msg":{"text":"héllo wörld ☃ 𝄞 😀 \ud83d\ude00","esc":"tab\t nl\n quote\" bs\\ ctl\u0001 del\u007f /\/ \u2028"}}`,
	`{"topic":"` + topic + `","msg":{"big":123456789012345678901234567890,"neg":-9007199254740993,"zero":0}}`,
	`{"topic":"` + topic + `","msg":{"f":[1e16,1E+16,1.5,-0.0,0.1,1e-7,2.5e-5,100.0,1.7976931348623157e308,5e-324]}}`,
	`{"topic":"` + topic + `","msg":{"a":{"b":{"c":[[],{},[{"d":null}],true,false]}}}}`,
	`{"topic":"` + topic + `","msg":{"k":1,"k":2,"z":{"y":1,"y":[3]}}}`,
	` { "msg" : { "b" : 1 , "a" : [ 2 , 3 ] , "B" : "é" } , "topic" : "` + topic + `" , "i" : 7 } `,
}

// Every message a pyzmq producer sends through the signing relay reaches
// every pyzmq listener signed by the relay's certificate, as a fedmsg
// validator (Python) checks it, with the original fields unchanged. The
// plain relay is the control: the same check must see no signature.
func TestSigningRelaySignsEveryMessage(t *testing.T) {
	plain, signingName := relayBinary(t)
	ssldir := sslDir(t)
	var sent [][]byte
	for _, body := range canonicalEdgeCases {
		sent = append(sent, []byte(body))
	}
	for i := 1; i <= 100; i++ {
		sent = append(sent, fedmsgBody(t, topic, i, map[string]any{"log": fmt.Sprintf("line %d", i), "n": i * 1000003}))
	}
	// Python would read 1e400 as inf and write Infinity, which is not JSON:
	// the relay must refuse it rather than sign what validators reject.
	const unreproducible = `{"topic":"` + topic + `","msg":{"x":1e400}}`

	for _, tc := range []struct {
		name   string
		exe    string
		args   []string
		signed bool
	}{
		{"run as fedmsg-signing-relay", signingName, nil, true},
		{"fedmsg-relay --sign", plain, []string{"--sign"}, true},
		{"fedmsg-relay without --sign (control)", plain, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, tc.exe, tc.args, signingConfig(ssldir))
			var msgs [][][]byte
			for _, body := range sent {
				msgs = append(msgs, [][]byte{[]byte(topic), body})
			}
			msgs = append(msgs, [][]byte{[]byte(topic), []byte(unreproducible)})
			received := exchange(t, r, ssldir, certProducer, 2, msgs)
			checkSigned(t, "subscriber 0", ssldir, sent, received[0], tc.signed, certRelay)
			// Every listener gets the same bytes: one signature per message.
			if !reflect.DeepEqual(received[1], received[0]) {
				t.Errorf("subscribers received different messages (%d and %d)", len(received[1]), len(received[0]))
			}
			if tc.signed {
				if n := r.metric(t, dropped("sign_failed")); n != 1 {
					t.Errorf("%s = %v, want 1 (the 1e400 body)", dropped("sign_failed"), n)
				}
			}
		})
	}
}

// checkSigned checks that got holds, in order, the messages whose bodies are
// sent (all on topic), signed by certname when signed is true, and not
// signed otherwise.
func checkSigned(t *testing.T, who, ssldir string, sent [][]byte, got [][][]byte, signed bool, certname string) {
	t.Helper()
	if !signed {
		// The control: relayed unchanged, so the verifier must call it unsigned.
		if len(got) < len(sent) {
			t.Fatalf("%s: received %d messages, want at least %d", who, len(got), len(sent))
		}
		for i, v := range verifyBodies(t, ssldir, nil, bodies(got[:len(sent)])) {
			if v.Error != "unsigned" {
				t.Errorf("%s: message %d through the plain relay: verifier says %q, want unsigned", who, i, v.Error)
			}
		}
		return
	}
	if len(got) != len(sent) {
		t.Fatalf("%s: received %d messages, want %d", who, len(got), len(sent))
	}
	for i, m := range got {
		if len(m) != 2 || string(m[0]) != topic {
			t.Fatalf("%s: message %d: frames %q, want [%s, body]", who, i, m, topic)
		}
	}
	wantCN := signingtest.CommonName(certname)
	for i, v := range verifyBodies(t, ssldir, sent, bodies(got)) {
		ok := v.Error == "" && v.CN != nil && *v.CN == wantCN &&
			v.Crypto != nil && *v.Crypto == "x509" && v.Unchanged != nil && *v.Unchanged
		if !ok {
			t.Errorf("%s: message %d: verifier error %q, cn %s (want %s), crypto %s, fields unchanged %v\nsent %s\ngot  %s",
				who, i, v.Error, deref(v.CN), wantCN, deref(v.Crypto), v.Unchanged != nil && *v.Unchanged, sent[i], got[i][1])
		}
	}
}

func bodies(msgs [][][]byte) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = m[len(m)-1]
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

// A missing or unreadable key pair stops the relay at start with a message
// naming the file, and no key material is ever printed.
func TestKeyErrorsStopTheStart(t *testing.T) {
	_, signingName := relayBinary(t)
	keyFile, certFile := certRelay+".key", certRelay+".crt"
	for _, tc := range []struct {
		name   string
		breaks func(dir string) error
		want   []string // in the output, beside "exit status"
	}{
		{"key missing", func(dir string) error { return os.Remove(filepath.Join(dir, keyFile)) },
			[]string{keyFile, "no such file"}},
		{"certificate missing", func(dir string) error { return os.Remove(filepath.Join(dir, certFile)) },
			[]string{certFile, "no such file"}},
		{"key unreadable", func(dir string) error {
			// Tests may run as root, who reads any mode: a directory cannot be read by anyone.
			path := filepath.Join(dir, keyFile)
			if err := os.Remove(path); err != nil {
				return err
			}
			return os.Mkdir(path, 0o700)
		}, []string{keyFile, "is a directory"}},
		{"key not PEM", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, keyFile), []byte("secret-but-not-a-key\n"), 0o600)
		}, []string{keyFile, "no PEM private key"}},
		{"key of another certificate", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, keyFile), pki.KeyPEM(certRotated), 0o600)
		}, []string{keyFile, certFile, "does not hold the public key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ssldir := sslDir(t)
			if err := tc.breaks(ssldir); err != nil {
				t.Fatal(err)
			}
			cfg := testutil.WriteFile(t, "relay.yaml", fmt.Sprintf(
				"relay_inbound: tcp://127.0.0.1:%d\nrelay_outbound: tcp://127.0.0.1:%d\n%s\n",
				testutil.FreePort(t), testutil.FreePort(t), signingConfig(ssldir)))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, signingName, "--config", cfg).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() <= 0 {
				t.Fatalf("relay with a broken key pair: %v (want a non-zero exit)\n%s", err, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			checkNoKeyMaterial(t, string(out), []byte("secret-but-not-a-key"))
		})
	}
}

// checkNoKeyMaterial fails if output holds a line of any test private key,
// or any of extra.
func checkNoKeyMaterial(t *testing.T, output string, extra ...[]byte) {
	t.Helper()
	secrets := extra
	for _, name := range []string{certRelay, certRotated, certProducer} {
		for _, line := range strings.Split(string(pki.KeyPEM(name)), "\n") {
			if len(line) > 16 && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, []byte(line))
			}
		}
	}
	if strings.Contains(output, "PRIVATE KEY") {
		t.Errorf("output mentions a PEM private key block:\n%s", output)
	}
	for _, s := range secrets {
		if strings.Contains(output, string(s)) {
			t.Errorf("output holds key material %q:\n%s", s, output)
		}
	}
}

// SIGHUP reloads the key pair: after the files are replaced with another
// signer's, later messages are signed by the new certificate; a broken
// replacement is refused and the relay keeps signing with what it had.
func TestSIGHUPReloadsKeys(t *testing.T) {
	_, signingName := relayBinary(t)
	ssldir := sslDir(t)
	r := startRelay(t, signingName, nil, signingConfig(ssldir))
	sendAndCheck := func(step string, certname string) {
		t.Helper()
		var sent [][]byte
		var msgs [][][]byte
		for i := 1; i <= 5; i++ {
			body := fedmsgBody(t, topic, i, map[string]any{"step": step})
			sent = append(sent, body)
			msgs = append(msgs, [][]byte{[]byte(topic), body})
		}
		received := exchange(t, r, ssldir, certProducer, 1, msgs)
		checkSigned(t, step, ssldir, sent, received[0], true, certname)
	}
	// install replaces the relay's key pair as an operator would.
	install := func(key, cert []byte) {
		t.Helper()
		replaceFile(t, filepath.Join(ssldir, certRelay+".key"), key)
		replaceFile(t, filepath.Join(ssldir, certRelay+".crt"), cert)
	}
	sendAndCheck("before SIGHUP", certRelay)
	install(pki.KeyPEM(certRotated), pki.CertPEM(certRotated))
	r.hangUp(t, "reloaded", 1)
	sendAndCheck("after SIGHUP with the rotated key pair", certRotated)

	install([]byte("not a key\n"), pki.CertPEM(certRelay))
	r.hangUp(t, "keeping the old ones", 1)
	sendAndCheck("after SIGHUP with a broken key", certRotated)

	if r.Cmd.ProcessState != nil {
		t.Fatalf("relay exited: %v", r.Cmd.ProcessState)
	}
	checkNoKeyMaterial(t, r.Output())
}
