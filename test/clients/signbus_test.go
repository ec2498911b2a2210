package clients

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// Topics the test routing policy pins: logger.log to this host's shell
// certificate, git.receive to its scm certificate (as Fedora's policy.py did).
const (
	logTopic = "org.fedoraproject.prod.logger.log"
	gitTopic = "org.fedoraproject.prod.git.receive"
)

// validatorScript is the Python implementation of fedmsg's validation the
// signing relay's tests use too.
const validatorScript = "../signing/testdata/fedmsg_crypto.py"

// shortHost is this machine's short hostname, as fedmsg computes it:
// socket.gethostname().split('.', 1)[0].
func shortHost(t testing.TB) string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitN(host, ".", 2)[0]
}

// Certificate names of the test PKI, for the real short hostname.
func shellCert(t testing.TB) string { return "shell-" + shortHost(t) }
func scmCert(t testing.TB) string   { return "scm-" + shortHost(t) }

// Certificates outside the policy: revoked, and from an untrusted CA.
const (
	revokedCert   = "revoked-shell"
	untrustedCert = "untrusted-shell"
)

var (
	busPKIOnce sync.Once
	busPKI     *signingtest.PKI
	busPKIErr  error
)

// signedBus is a relay with a fedmsg config directory in Fedora's shape for
// a signed bus: base.py, relay.py, ssl.py (sign_messages, certnames for
// this host's shell and scm certificates) and policy.py.
type signedBus struct {
	*relay
	ssldir, conf string
	policy       map[string][]string
}

// newSignedBus starts a relay and writes the config. ssl.py is Python in the
// shape Fedora's roles/fedmsg/base template wrote (module variables, the
// short hostname from socket.gethostname(), %-formatting,
// certnames=dict([...] + [...])), so the tools must read it the way fedmsg
// does; extraSSL are Python statements run after ssl.py's config is built
// (e.g. "config['certnames'] = {}").
func newSignedBus(t testing.TB, extraSSL ...string) *signedBus {
	t.Helper()
	busPKIOnce.Do(func() {
		busPKI, busPKIErr = signingtest.Generate(
			signingtest.Cert{Name: shellCert(t)}, signingtest.Cert{Name: scmCert(t)},
			signingtest.Cert{Name: revokedCert, Revoked: true},
			signingtest.Cert{Name: untrustedCert, OtherCA: true})
	})
	if busPKIErr != nil {
		t.Fatal(busPKIErr)
	}
	b := &signedBus{relay: startRelay(t), ssldir: sharedDir(t), conf: sharedDir(t), policy: map[string][]string{
		logTopic: {signingtest.CommonName(shellCert(t))},
		gitTopic: {signingtest.CommonName(scmCert(t))},
	}}
	if err := busPKI.WriteDir(b.ssldir); err != nil {
		t.Fatal(err)
	}
	writeFile(t, b.conf, "base.py", "# Written by the test, as Ansible writes it.\nconfig = dict(\n    environment='prod',\n    active=True,\n)\n")
	writeFile(t, b.conf, "relay.py", fmt.Sprintf(
		"config = dict(\n    relay_inbound=[%q],\n    relay_inbound_confirm=[%q],\n    endpoints={'relay_outbound': [%q]},\n)\n",
		b.Inbound, b.Confirm, b.Outbound))
	writeFile(t, b.conf, "ssl.py", fmt.Sprintf(`# ssl.py as roles/fedmsg/base/templates/ssl.py.j2 rendered it.
import socket

hostname = socket.gethostname().split('.', 1)[0]
ssldir = %q

config = dict(
    sign_messages=True,
    validate_signatures=True,
    ssldir=ssldir,
    ca_cert_location="%%s/%s" %% ssldir,
    crl_location="%%s/%s" %% ssldir,
    # This host's own certificates, then the static pairs.
    certnames=dict([
        ("shell.%%s" %% hostname, "shell-%%s" %% hostname),
        ("scm.%%s" %% hostname, "scm-%%s" %% hostname),
    ] + [
        ("signing_relay.busgateway01", "signing_relay-busgateway01"),
    ]),
)
%s
`, b.ssldir, signingtest.CAFile, signingtest.CRLFile, strings.Join(extraSSL, "\n")))
	var policy strings.Builder
	for topic, names := range b.policy {
		fmt.Fprintf(&policy, "        %q: [%q],\n", topic, names[0])
	}
	writeFile(t, b.conf, "policy.py", "config = dict(\n    routing_nitpicky=False,\n    routing_policy={\n"+policy.String()+"    },\n)\n")
	return b
}

// sharedDir is a fresh directory every user can read, removed after the
// test (t.TempDir's parent is private to root).
func sharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fedmsg-signed-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// env is what fedmsg-logger and the git hook need to use the bus's config.
func (b *signedBus) env() []string { return []string{"FEDMSG_CONFIG=" + b.conf} }

// fedmsgVerdict is the Python validator's answer for one body.
type fedmsgVerdict struct {
	Error string `json:"error"` // "" when fedmsg would accept the message
	CN    string `json:"cn"`    // the signer's common name; "" when there is none
}

// validate runs fedmsg's validation (Python, pyOpenSSL and cryptography)
// with the bus's CA, CRL and routing policy on every body.
func (b *signedBus) validate(t *testing.T, bodies ...string) []fedmsgVerdict {
	t.Helper()
	py := clienttest.RequirePython(t)
	err := exec.Command(py, "-c", "import cryptography, OpenSSL").Run()
	testutil.Require(t, err == nil, py+" with python3-cryptography and python3-openssl")
	policy, err := json.Marshal(b.policy)
	if err != nil {
		t.Fatal(err)
	}
	policyFile := writeFile(t, t.TempDir(), "policy.json", string(policy))
	var stdin bytes.Buffer
	for _, body := range bodies {
		fmt.Fprintf(&stdin, "{\"got\": %q}\n", base64.StdEncoding.EncodeToString([]byte(body)))
	}
	cmd := exec.Command(py, validatorScript, "validate", filepath.Join(b.ssldir, signingtest.CAFile),
		filepath.Join(b.ssldir, signingtest.CRLFile), policyFile, "false")
	cmd.Stdin = &stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Python validator: %v\n%s", err, stderr.String())
	}
	verdicts := make([]fedmsgVerdict, len(bodies))
	dec := json.NewDecoder(bytes.NewReader(out))
	for i := range verdicts {
		if err := dec.Decode(&verdicts[i]); err != nil {
			t.Fatalf("validator answer %d of %d: %v\n%s", i+1, len(bodies), err, out)
		}
	}
	return verdicts
}
