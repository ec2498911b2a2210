package pyjson

import (
	"encoding/base64"
	"os/exec"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// pythonCanonical runs testdata/python_json.py over bodies in one process and
// returns its answers, one per body: "ok <JSON>" or "err <exception>".
func pythonCanonical(t testing.TB, bodies [][]byte) []string {
	t.Helper()
	_, err := exec.LookPath(testutil.PythonPath)
	testutil.Require(t, err == nil, testutil.PythonPath)
	lines := make([]string, len(bodies))
	for i, b := range bodies {
		lines[i] = base64.StdEncoding.EncodeToString(b)
	}
	return testutil.RunLines(t, exec.Command(testutil.PythonPath, "testdata/python_json.py"), lines)
}
