package clients

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
)

// TestSignedLoggerPassesFedmsgValidation: on a bus whose config turns
// sign_messages on, what our fedmsg-logger sends reaches a Python subscriber
// signed with this host's certificate for its cert prefix, and fedmsg's own
// validation (CA, CRL, signature, routing policy) accepts it. The controls:
// a tampered copy, and a message signed with a certificate the policy does
// not allow for its topic, are rejected.
func TestSignedLoggerPassesFedmsgValidation(t *testing.T) {
	b := newSignedBus(t)
	sub := subscribe(t, b.relay)
	shellCN, scmCN := signingtest.CommonName(shellCert(t)), signingtest.CommonName(scmCert(t))
	cases := []struct {
		name       string
		args       []string
		topic, cn  string
		verdict    string
		certPrefix string // written to the config as cert_prefix first
	}{
		{"default cert prefix shell", []string{"--message", "signed shell"}, logTopic, shellCN, "", ""},
		{"--cert-prefix scm as the git hook", []string{"--cert-prefix", "scm", "--modname", "git", "--topic", "receive", "--json-input", "--message", `{"commit": {"rev": "abc"}}`}, gitTopic, scmCN, "", ""},
		{"--confirm", []string{"--confirm", "--message", "signed confirmed"}, logTopic, shellCN, "", ""},
		{"scm cert on a topic pinned to shell", []string{"--cert-prefix", "scm", "--message", "wrong cert"}, logTopic, scmCN, "routing_policy", ""},
		{"shell cert on a topic pinned to scm", []string{"--modname", "git", "--topic", "receive", "--json-input", "--message", `{"commit": {}}`}, gitTopic, shellCN, "routing_policy", ""},
		// fedmsg takes --cert-prefix's default from the config's cert_prefix.
		{"cert_prefix scm from the config", []string{"--modname", "git", "--topic", "receive", "--json-input", "--message", `{"commit": {}}`}, gitTopic, scmCN, "", "scm"},
	}
	var bodies []string
	for _, tc := range cases {
		if tc.certPrefix != "" {
			writeFile(t, b.conf, "zz-prefix.py", fmt.Sprintf("config = dict(cert_prefix=%q)\n", tc.certPrefix))
		}
		res := runCmd(t, "", b.env(), bin("fedmsg-logger"), tc.args...)
		if res.code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.name, res.code, res.stderr)
		}
		m := sub.next(10 * time.Second)
		if m.Topic != tc.topic {
			t.Fatalf("%s: topic %q, want %q", tc.name, m.Topic, tc.topic)
		}
		bodies = append(bodies, m.Body)
	}
	// A tampered copy of the first message: same signature, other payload.
	var tampered map[string]any
	if err := json.Unmarshal([]byte(bodies[0]), &tampered); err != nil {
		t.Fatal(err)
	}
	tampered["msg"] = map[string]any{"log": "tampered"}
	tamperedBody, err := json.Marshal(tampered)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := b.validate(t, append(bodies, string(tamperedBody))...)
	for i, tc := range cases {
		v := verdicts[i]
		if v.Error != tc.verdict || v.CN != tc.cn {
			t.Errorf("%s: fedmsg says error %q, signer %q; want error %q, signer %q\n%s", tc.name, v.Error, v.CN, tc.verdict, tc.cn, bodies[i])
		}
	}
	if v := verdicts[len(cases)]; v.Error != "bad_signature" {
		t.Errorf("tampered copy: fedmsg says %+v, want bad_signature", v)
	}
	sub.expectNone(200 * time.Millisecond)
}

// TestGitHookSignsAsScm: a real git push through contrib/git/post-receive
// on a signed bus sends git.receive signed with the scm certificate, which
// fedmsg's validation accepts; hooks.fedmsgCertPrefix picks another cert
// (here shell, which the policy refuses for git.receive).
func TestGitHookSignsAsScm(t *testing.T) {
	clienttest.Require(t, "git")
	clienttest.Require(t, "bash")
	b := newSignedBus(t)
	sub := subscribe(t, b.relay)
	w, bare := hookedRepo(t, b.conf)

	w.commit(map[string]*string{"a.txt": text("a\n")}, "First\n")
	w.git("push", "-q", "origin", "main")
	scm := sub.next(10 * time.Second)

	(&gitRepo{t: t, dir: bare}).git("config", "hooks.fedmsgCertPrefix", "shell")
	w.commit(map[string]*string{"a.txt": text("b\n")}, "Second\n")
	w.git("push", "-q", "origin", "main")
	shell := sub.next(10 * time.Second)

	verdicts := b.validate(t, scm.Body, shell.Body)
	for i, want := range []struct{ cn, verdict string }{
		{signingtest.CommonName(scmCert(t)), ""},
		{signingtest.CommonName(shellCert(t)), "routing_policy"},
	} {
		m := []received{scm, shell}[i]
		if m.Topic != gitTopic {
			t.Errorf("push %d: topic %q, want %q", i, m.Topic, gitTopic)
		}
		if v := verdicts[i]; v.Error != want.verdict || v.CN != want.cn {
			t.Errorf("push %d: fedmsg says error %q, signer %q; want error %q, signer %q", i, v.Error, v.CN, want.verdict, want.cn)
		}
	}
	sub.expectNone(200 * time.Millisecond)
}

// TestSignedLoggerRefusesToSendUnsigned: when this host cannot sign, the
// logger says what it looked for in one line, exits 1, and sends nothing:
// the next message a listening subscriber sees is a later good one.
func TestSignedLoggerRefusesToSendUnsigned(t *testing.T) {
	b := newSignedBus(t)
	sub := subscribe(t, b.relay)
	host := shortHost(t)
	keyPath := filepath.Join(b.ssldir, shellCert(t)+".key")

	noCertname := newSignedBus(t, "config['certnames'] = {'shell.elsewhere': 'shell-elsewhere'}")
	noSSLDir := newSignedBus(t, fmt.Sprintf("config['ssldir'] = %q", filepath.Join(b.ssldir, "missing")))
	badKey := newSignedBus(t)
	if err := os.WriteFile(filepath.Join(badKey.ssldir, shellCert(t)+".key"), []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := newSignedBus(t)
	writeFile(t, broken.conf, "ssl.py", "config = dict(sign_messages=True,\n    certnames={'shell.x': 'y'\n)\n")

	// The key is readable by root only: run the logger as nobody (or, when
	// the tests do not run as root, make the key unreadable to us).
	asUser := []string{bin("fedmsg-logger")}
	if os.Geteuid() == 0 {
		asUser = []string{clienttest.Require(t, "setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", bin("fedmsg-logger")}
	} else if err := os.Chmod(keyPath, 0); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		conf    string
		cmd     []string
		stderrs []string
	}{
		{"no certname for this host", noCertname.conf, []string{bin("fedmsg-logger")}, []string{fmt.Sprintf(`certnames has no "shell.%s"`, host)}},
		{"key not readable by the user", b.conf, asUser, []string{keyPath, "permission denied", fmt.Sprintf(`certnames["shell.%s"]`, host)}},
		{"ssldir missing", noSSLDir.conf, []string{bin("fedmsg-logger")}, []string{"ssldir", filepath.Join(b.ssldir, "missing"), "no such file"}},
		{"bad key", badKey.conf, []string{bin("fedmsg-logger")}, []string{filepath.Join(badKey.ssldir, shellCert(t)+".key"), "parse private key"}},
		{"config syntax error", broken.conf, []string{bin("fedmsg-logger")}, []string{filepath.Join(broken.conf, "ssl.py") + ":"}},
	} {
		// Every config sends to b's relay, whose subscriber is listening.
		env := []string{"FEDMSG_CONFIG=" + tc.conf, "FEDMSG_RELAY_INBOUND=" + b.Inbound}
		res := runCmd(t, "", env, tc.cmd[0], append(tc.cmd[1:], "--message", "must not be sent")...)
		if res.code != 1 || strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line", tc.name, res.code, res.stderr)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(res.stderr))
		for _, want := range tc.stderrs {
			if !strings.Contains(res.stderr, want) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, res.stderr, want)
			}
		}
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(keyPath, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res := runCmd(t, "", b.env(), bin("fedmsg-logger"), "--message", "the good one")
	if res.code != 0 {
		t.Fatalf("good config: exit %d: %s", res.code, res.stderr)
	}
	if m := sub.next(10 * time.Second); !strings.Contains(m.Body, `"log":"the good one"`) {
		t.Errorf("the subscriber saw %s first, want the good message", m.Body)
	}
	sub.expectNone(200 * time.Millisecond)
}
