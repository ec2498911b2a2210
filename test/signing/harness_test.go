// Package signing holds end-to-end tests of the signing relay: the real
// fedmsg-relay binary (also run as fedmsg-signing-relay) between real libzmq
// peers (Debian's python3-zmq), with signatures checked by a Python verifier
// written from fedmsg's X.509 scheme (python3-cryptography).
package signing

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// Certificate names of the test PKI.
const (
	certRelay     = "signing_relay" // the relay's signer
	certRotated   = "rotated"       // the relay's signer after a key rotation
	certProducer  = "shell-app01"   // a host allowed by the routing policy
	certRevoked   = "revoked"       // in the CRL
	certUntrusted = "untrusted"     // issued by another CA with the same name
)

var (
	pkiOnce sync.Once
	pki     *signingtest.PKI
	pkiErr  error
)

// sslDir writes the test PKI (generated once per test binary) into a fresh
// directory laid out as fedmsg's ssldir.
func sslDir(t testing.TB) string {
	t.Helper()
	pkiOnce.Do(func() {
		pki, pkiErr = signingtest.Generate(
			signingtest.Cert{Name: certRelay},
			signingtest.Cert{Name: certRotated},
			signingtest.Cert{Name: certProducer},
			signingtest.Cert{Name: certRevoked, Revoked: true},
			signingtest.Cert{Name: certUntrusted, OtherCA: true},
		)
	})
	if pkiErr != nil {
		t.Fatalf("test PKI: %v", pkiErr)
	}
	dir := t.TempDir()
	if err := pki.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// relayBinary returns the built fedmsg-relay, and the same binary reached
// through a fedmsg-signing-relay symlink, as the package installs it.
func relayBinary(t testing.TB) (plain, signingName string) {
	t.Helper()
	plain = testutil.Binary(t, "fedmsg-relay")
	signingName = filepath.Join(t.TempDir(), "fedmsg-signing-relay")
	if err := os.Symlink(plain, signingName); err != nil {
		t.Fatal(err)
	}
	return plain, signingName
}

// relay is a running relay binary on free loopback ports.
type relay struct {
	*testutil.Process
	inbound, outbound, metrics string
}

// startRelay runs exe with args and a config file holding the endpoints and
// the extra YAML lines, and returns once the forwarding loop runs.
func startRelay(t testing.TB, exe string, args []string, extraConfig ...string) *relay {
	t.Helper()
	r := &relay{
		inbound:  fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)),
		outbound: fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)),
		metrics:  fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
	}
	cfg := testutil.WriteFile(t, "relay.yaml", fmt.Sprintf(
		"relay_inbound: %s\nrelay_outbound: %s\nmetrics_address: %s\n%s\n",
		r.inbound, r.outbound, r.metrics, strings.Join(extraConfig, "\n")))
	r.Process = testutil.Start(t, exe, append([]string{"--config", cfg}, args...)...)
	r.WaitOutput(t, "relaying", 10*time.Second)
	return r
}

// metric returns the value of series in the relay's /metrics.
func (r *relay) metric(t testing.TB, series string) float64 {
	t.Helper()
	return testutil.Metric(t, r.metrics, series)
}

// hangUp sends SIGHUP and waits until the output holds want count times.
func (r *relay) hangUp(t testing.TB, want string, count int) {
	t.Helper()
	if err := r.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(r.Output(), want) < count {
		if time.Now().After(deadline) {
			t.Fatalf("no %d× %q after SIGHUP:\n%s", count, want, r.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replaceFile replaces path the way operators and tools do: write aside,
// then rename over it.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func dropped(reason string) string {
	return fmt.Sprintf("fedmsg_relay_dropped_total{reason=%q}", reason)
}

// python returns Debian's interpreter after checking it has python3-zmq and
// python3-cryptography (skip without them, fail under CI=true).
func python(t testing.TB) string {
	t.Helper()
	py := testutil.Python(t)
	err := exec.Command(py, "-c", "import cryptography").Run()
	testutil.Require(t, err == nil, py+" with python3-cryptography")
	return py
}

// runScript runs testdata/fedmsg_crypto.py in mode with stdin and returns
// its output.
func runScript(t testing.TB, stdin []byte, mode string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(python(t), append([]string{"testdata/fedmsg_crypto.py", mode}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fedmsg_crypto.py %s: %v\n%s", mode, err, stderr.String())
	}
	return out
}

// jsonLines encodes each request as one line of JSON.
func jsonLines(t testing.TB, requests []any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range requests {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// verdict is the Python verifier's answer for one received body.
type verdict struct {
	Error     string  `json:"error"` // "" when the signature and certificate check out
	CN        *string `json:"cn"`
	Crypto    *string `json:"crypto"`
	Unchanged *bool   `json:"unchanged"` // original fields kept; nil when not asked
}

// verifyBodies checks got[i] with the Python verifier against the CA in
// ssldir; when sent is not nil, also that got[i] carries sent[i]'s fields.
func verifyBodies(t testing.TB, ssldir string, sent, got [][]byte) []verdict {
	t.Helper()
	requests := make([]any, len(got))
	for i, body := range got {
		req := map[string][]byte{"got": body}
		if sent != nil {
			req["sent"] = sent[i]
		}
		requests[i] = req
	}
	out := runScript(t, jsonLines(t, requests), "verify", filepath.Join(ssldir, signingtest.CAFile))
	verdicts := make([]verdict, 0, len(got))
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var v verdict
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("verifier answer %q: %v", sc.Text(), err)
		}
		verdicts = append(verdicts, v)
	}
	if len(verdicts) != len(got) {
		t.Fatalf("verifier gave %d answers for %d bodies", len(verdicts), len(got))
	}
	return verdicts
}

// toSign is a body to sign with a certificate of the test PKI.
type toSign struct {
	certname string
	body     []byte
}

// signBodies signs each body with its certname's key in Python, as
// fedmsg.publish does, in one run of the script.
func signBodies(t testing.TB, ssldir string, bodies ...toSign) [][]byte {
	t.Helper()
	requests := make([]any, len(bodies))
	for i, b := range bodies {
		requests[i] = map[string]any{"certname": b.certname, "body": b.body}
	}
	lines := strings.Fields(string(runScript(t, jsonLines(t, requests), "sign", ssldir)))
	if len(lines) != len(bodies) {
		t.Fatalf("signer gave %d answers for %d bodies", len(lines), len(bodies))
	}
	signed := make([][]byte, len(lines))
	for i, line := range lines {
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		signed[i] = b
	}
	return signed
}

// exchange sends messages ([topic, body] each) from one pyzmq publisher
// through r, after probes and before a sentinel signed with certname, and
// returns, for each of n pyzmq subscribers, what it received before the
// sentinel, in order. No idle timeouts: a slow (signing) relay only makes it
// wait longer.
func exchange(t testing.TB, r *relay, ssldir, certname string, subscribers int, messages [][][]byte) [][][][]byte {
	t.Helper()
	spec, err := json.Marshal(map[string]any{
		"inbound": r.inbound, "outbound": r.outbound, "subscribers": subscribers,
		"ssldir": ssldir, "certname": certname, "messages": messages,
	})
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Received [][][][]byte `json:"received"`
	}
	if err := json.Unmarshal(runScript(t, spec, "exchange"), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Received) != subscribers {
		t.Fatalf("exchange: %d subscribers answered, want %d", len(res.Received), subscribers)
	}
	return res.Received
}

// fedmsgBody is a fedmsg message body on topic with payload msg.
func fedmsgBody(t testing.TB, topic string, i int, msg any) []byte {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"topic": topic, "msg": msg, "i": i, "timestamp": 1700000000 + i,
		"msg_id": fmt.Sprintf("2026-00000000-0000-4000-8000-%012d", i), "username": "tester",
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}
