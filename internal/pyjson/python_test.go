package pyjson

import (
	"bufio"
	"bytes"
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
	var stdin bytes.Buffer
	for _, b := range bodies {
		stdin.WriteString(base64.StdEncoding.EncodeToString(b))
		stdin.WriteByte('\n')
	}
	cmd := exec.Command(testutil.PythonPath, "testdata/python_json.py")
	cmd.Stdin = &stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	var answers []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		answers = append(answers, sc.Text())
	}
	if len(answers) != len(bodies) {
		t.Fatalf("python: %d answers for %d bodies\n%s", len(answers), len(bodies), stderr.String())
	}
	return answers
}
