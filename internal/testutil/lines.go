package testutil

import (
	"bufio"
	"bytes"
	"os/exec"
	"testing"
)

// RunLines runs cmd, a reference script that answers one stdin line with one
// stdout line, over requests in one process, and returns its answers.
func RunLines(t testing.TB, cmd *exec.Cmd, requests []string) []string {
	t.Helper()
	var stdin bytes.Buffer
	for _, r := range requests {
		stdin.WriteString(r)
		stdin.WriteByte('\n')
	}
	cmd.Stdin = &stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
	}
	var answers []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		answers = append(answers, sc.Text())
	}
	if len(answers) != len(requests) {
		t.Fatalf("%v: %d answers for %d requests\n%s", cmd.Args, len(answers), len(requests), stderr.String())
	}
	return answers
}
