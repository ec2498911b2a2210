package signing

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// systemPython is Debian's interpreter, which has python3-cryptography and
// python3-openssl; the python3 on PATH may be another one.
const systemPython = "/usr/bin/python3"

// requirePython skips the test when Debian's Python or its crypto modules are
// missing, except in CI (CI=true), where that is a failure.
func requirePython(t testing.TB) {
	t.Helper()
	out, err := exec.Command(systemPython, "-c", "import cryptography, OpenSSL").CombinedOutput()
	if err == nil {
		return
	}
	msg := "need " + systemPython + " with python3-cryptography and python3-openssl: " + err.Error() + ": " + string(out)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// runReference runs testdata/fedmsg_x509.py with args, one request per line,
// and returns its answers, one per request.
func runReference(t testing.TB, requests []string, args ...string) []string {
	t.Helper()
	requirePython(t)
	return testutil.RunLines(t, exec.Command(systemPython, append([]string{"testdata/fedmsg_x509.py"}, args...)...), requests)
}

// b64Lines encodes each body as one base64 line for the reference script.
func b64Lines(bodies [][]byte) []string {
	lines := make([]string, len(bodies))
	for i, b := range bodies {
		lines[i] = base64.StdEncoding.EncodeToString(b)
	}
	return lines
}

// signRequest asks the reference script to sign body with certname, written
// as fedmsg.publish ("publish") or the Python signing relay ("moksha") does.
func signRequest(certname, style string, body []byte) string {
	req, _ := json.Marshal(map[string]any{"certname": certname, "style": style, "body": body})
	return string(req)
}

// verifyRequest asks the reference script to validate body.
func verifyRequest(body []byte) string {
	req, _ := json.Marshal(map[string]any{"body": body})
	return string(req)
}
