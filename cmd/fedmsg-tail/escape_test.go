package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
)

func TestPrintMessageEscapesControls(t *testing.T) {
	for _, tc := range []struct {
		name        string
		topic, body string
		jsonOnly    bool
		want        string
	}{
		{"JSON body with DEL and C1 CSI", "t", "{\"a\": \"x\x7f\u009b31m\"}", false, `t {"a":"x\u007f\u009b31m"}`},
		{"escape sequence in the topic", "t\x1b]0;pwned\a", `{}`, false, `t\u001b]0;pwned\u0007 {}`},
		{"raw body, not JSON", "t", "\x1b[2J\xff ok é", false, `t \u001b[2J\xff ok é`},
		{"raw body as --json", "t", "\x1b[2J\xff\x7f", true, `"\u001b[2J\ufffd\u007f"`},
		{"invalid UTF-8 in a JSON string", "t", "{\"a\":\"\xff\"}", true, `{"a":"\ufffd"}`},
		{"plain text untouched", "org.x.log", `{"log":"héllo 😀"}`, false, `org.x.log {"log":"héllo 😀"}`},
	} {
		var buf bytes.Buffer
		if err := printMessage(bufio.NewWriter(&buf), []byte(tc.topic), []byte(tc.body), tc.jsonOnly, nil); err != nil {
			t.Fatal(err)
		}
		got := buf.String()
		if got != tc.want+"\n" {
			t.Errorf("%s: printMessage(%q, %q, json=%v) = %q, want %q", tc.name, tc.topic, tc.body, tc.jsonOnly, got, tc.want+"\n")
		}
		if tc.jsonOnly && !json.Valid([]byte(got)) {
			t.Errorf("%s: --json line %q is not JSON", tc.name, got)
		}
	}
}
