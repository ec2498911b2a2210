package fedmsgconf

import (
	"reflect"
	"testing"
)

func TestTypedValues(t *testing.T) {
	cfg, err := Parse(`config = dict(
    sign_messages=True, validate_signatures="no", routing_nitpicky=None, active=1,
    certnames={"shell.app01": "shell-app01.example.org", "bad.app01": 3},
    routing_policy={"org.x.prod.git.receive": ["scm-pkgs01.example.org"],
                    "org.x.prod.logger.log": ("shell-app01.example.org", "shell-app02.example.org")},
    bad_policy={"t": "not-a-list"},
    ssldir="/etc/pki/fedmsg",
)
`)
	if err != nil {
		t.Fatal(err)
	}
	c := Config(cfg)
	for _, tc := range []struct {
		key       string
		def, want bool
		wantErr   bool
	}{
		{"sign_messages", false, true, false},
		{"validate_signatures", true, false, false},
		{"routing_nitpicky", true, true, false}, // None: the default
		{"absent", true, true, false},
		{"active", false, false, true}, // fedmsg refuses 1 too
		{"ssldir", false, false, true},
	} {
		got, err := c.Bool(tc.key, tc.def)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("Bool(%q, %v) = %v, %v; want %v, error %v", tc.key, tc.def, got, err, tc.want, tc.wantErr)
		}
	}

	if _, err := c.StringMap("certnames"); err == nil {
		t.Error("StringMap(certnames) with an int value: no error")
	}
	delete(c["certnames"].(map[string]any), "bad.app01")
	names, err := c.StringMap("certnames")
	if want := map[string]string{"shell.app01": "shell-app01.example.org"}; err != nil || !reflect.DeepEqual(names, want) {
		t.Errorf("StringMap(certnames) = %v, %v; want %v", names, err, want)
	}
	policy, err := c.ListMap("routing_policy")
	want := map[string][]string{
		"org.x.prod.git.receive": {"scm-pkgs01.example.org"},
		"org.x.prod.logger.log":  {"shell-app01.example.org", "shell-app02.example.org"},
	}
	if err != nil || !reflect.DeepEqual(policy, want) {
		t.Errorf("ListMap(routing_policy) = %v, %v; want %v", policy, err, want)
	}
	if m, err := c.ListMap("absent"); m != nil || err != nil {
		t.Errorf("ListMap(absent) = %v, %v; want nil, nil", m, err)
	}
	for _, key := range []string{"bad_policy", "ssldir"} {
		if _, err := c.ListMap(key); err == nil {
			t.Errorf("ListMap(%q): no error", key)
		}
	}
}
