package ansible

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
)

// amqpSecret is the broker password in the bridge's URL; no output may show it.
const amqpSecret = "s3cret-amqp-password"

// bridgeSigningNRPE configures the running relay on h with the AMQP bridge (to a port where
// no broker listens: the relay spools meanwhile), signing and the NRPE checks, as a
// production inventory would, on the host the other subtests already booted. It proves:
// the second run changes nothing; the broker password appears in no Ansible output or
// relay log; messages come out signed; the NRPE user is in group fedmsg and every NRPE
// command the role defined passes when run as that user, while a user outside the group
// is refused the status socket.
func (f *fixture) bridgeSigningNRPE(t *testing.T, h *testHost) {
	// What a Fedora host has before the role runs: NRPE's user and configuration directory
	// (from the nrpe package) and the relay's key pair, deployed from the private repository.
	h.MustExec("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "nrpe")
	h.MustExec("mkdir", "-p", "/etc/nrpe.d")
	pki, err := signingtest.Generate(signingtest.Cert{Name: "busgateway-relay"})
	if err != nil {
		t.Fatal(err)
	}
	ssldir := t.TempDir()
	if err := pki.WriteDir(ssldir); err != nil {
		t.Fatal(err)
	}
	for _, file := range mustGlob(t, filepath.Join(ssldir, "*")) {
		h.MustCopy(file, "/etc/pki/fedmsg/"+filepath.Base(file))
	}
	h.MustExec("chmod", "0644", "/etc/pki/fedmsg/ca.crt", "/etc/pki/fedmsg/busgateway-relay.crt")
	h.MustExec("chmod", "0640", "/etc/pki/fedmsg/busgateway-relay.key")
	h.MustExec("chgrp", "-R", "fedmsg", "/etc/pki/fedmsg")

	t.Cleanup(func() {
		if t.Failed() { // the relay logs to its file, not the journal host.Boot shows
			out, _ := h.Exec("tail", "-n", "20", "/var/log/fedmsg/fedmsg-relay.log")
			t.Logf("relay log tail:\n%s", secretLines(out, true))
		}
	})

	amqpPort := freePorts(t, 1, "127.0.0.1")[0]
	vars, err := json.Marshal(map[string]any{
		"fedmsg_relay_amqp_url":        fmt.Sprintf("amqp://fedmsg:%s@127.0.0.1:%d/%%2Fpubsub", amqpSecret, amqpPort),
		"fedmsg_relay_sign_messages":   true,
		"fedmsg_relay_certnames":       map[string]string{"signing_relay": "busgateway-relay"},
		"fedmsg_relay_nrpe_user":       "nrpe",
		"fedmsg_relay_nrpe_checks":     true,
		"fedmsg_relay_nrpe_plugin_dir": "/usr/lib/nagios/plugins", // Debian's
		"fedmsg_relay_nrpe_service":    "",                        // no NRPE daemon on the test host
		// Status every second, not 5: each check waits for one (CI time).
		"fedmsg_relay_config_extra":    map[string]string{"monitoring_interval": "1s"},
		"fedmsg_relay_nrpe_thresholds": map[string]int{"exceptions_warning": 1, "exceptions_critical": 10, "backlog_warning": 10, "backlog_critical": 50},
	})
	if err != nil {
		t.Fatal(err)
	}
	varsFile := filepath.Join(t.TempDir(), "vars.json")
	if err := os.WriteFile(varsFile, vars, 0o600); err != nil {
		t.Fatal(err)
	}

	// --diff: the relay.yaml template's diff would show the URL, were it not for no_log.
	first, output := f.playOutput(t, "site.yml", "-e", "@"+varsFile, "--diff")
	if strings.Contains(output, amqpSecret) {
		t.Errorf("the AMQP password appears in ansible-playbook's output:\n%s", secretLines(output, false))
	}
	if len(first.changedTasks()) == 0 {
		t.Error("the run that configures the bridge, signing and NRPE changed nothing")
	}
	second, output := f.playOutput(t, "site.yml", "-e", "@"+varsFile)
	if changed := second.changedTasks(); len(changed) > 0 {
		t.Errorf("second run with AMQP, signing and NRPE variables changed: %v", changed)
	}
	if strings.Contains(output, amqpSecret) {
		t.Errorf("the AMQP password appears in the second run's output:\n%s", secretLines(output, false))
	}

	config := h.MustExec("cat", "/etc/fedmsg-relay/relay.yaml")
	for _, want := range []string{"sign_messages: true", `"signing_relay": "busgateway-relay"`, "amqp:"} {
		if !strings.Contains(config, want) {
			t.Errorf("relay.yaml lacks %q:\n%s", want, config)
		}
	}
	if mode := strings.TrimSpace(h.MustExec("stat", "-c", "%a %U:%G", "/etc/fedmsg-relay/relay.yaml")); mode != "640 root:fedmsg" {
		t.Errorf("relay.yaml, which holds the broker password, is %s, want 640 root:fedmsg", mode)
	}

	received := f.sendThroughRelay(t, f.plain)
	if !strings.Contains(received, `"crypto":"x509"`) || !strings.Contains(received, `"signature"`) {
		t.Errorf("message through the signing relay is not signed: %s", received)
	}
	if log, err := h.Exec("cat", "/var/log/fedmsg/fedmsg-relay.log"); err != nil || strings.Contains(log, amqpSecret) {
		t.Errorf("relay log (err %v) shows the AMQP password:\n%s", err, secretLines(log, false))
	}

	if groups := strings.Fields(h.MustExec("id", "-nG", "nrpe")); !slices.Contains(groups, "fedmsg") {
		t.Errorf("nrpe is in groups %v, want fedmsg among them", groups)
	}
	commands := nrpeCommands(t, h.MustExec("cat", "/etc/nrpe.d/fedmsg_relay.cfg"))
	for _, name := range []string{"check_fedmsg_relay_proc", "check_fedmsg_cp_busgateway_relay",
		"check_fedmsg_cexceptions_busgateway_relay", "check_fedmsg_cbacklog_busgateway_relay"} {
		line, ok := commands[name]
		if !ok {
			t.Errorf("/etc/nrpe.d/fedmsg_relay.cfg defines no %s: %v", name, commands)
			continue
		}
		// As NRPE runs a command: through the shell, as its user.
		out, err := h.Exec("runuser", "-u", "nrpe", "--", "/bin/sh", "-c", line)
		t.Logf("%s as nrpe: %s", name, strings.TrimSpace(out))
		if err != nil || !regexp.MustCompile(`^(PROCS )?OK`).MatchString(out) {
			t.Errorf("%s (%s) as nrpe: %v\n%s", name, line, err, out)
		}
	}
	// The same plugin reports what it finds wrong, with nagios exit codes.
	for _, tt := range []struct {
		args, want string
		code       int
	}{
		{"cp fedmsg-relay RelayConsumer NoSuchConsumer", "ERROR: NoSuchConsumer not found among installed plugins", 2},
		{"backlog fedmsg-relay RelayConsumer -2 -1", "CRITICAL: fedmsg consumer RelayConsumer backlog value is", 2},
		{"exceptions fedmsg-relay RelayConsumer -1 10", "WARNING: fedmsg consumer RelayConsumer exceptions value is 0", 1},
	} {
		out, err := h.Exec("runuser", "-u", "nrpe", "--", "/bin/sh", "-c",
			"/usr/lib/nagios/plugins/check_fedmsg_consumers "+tt.args+`; echo "exit $?"`)
		if want := fmt.Sprintf("exit %d", tt.code); err != nil || !strings.HasPrefix(out, tt.want) || !strings.Contains(out, want) {
			t.Errorf("check_fedmsg_consumers %s: %v %q, want %q and %s", tt.args, err, out, tt.want, want)
		}
	}
	// The status socket is fedmsg:fedmsg 0770: outside the group, the check cannot read it.
	out, err := h.Exec("runuser", "-u", "nobody", "--", "/bin/sh", "-c", commands["check_fedmsg_cp_busgateway_relay"])
	if err == nil || !strings.Contains(out, "UNKNOWN - cannot write to /run/fedmsg/monitoring-fedmsg-relay.socket") {
		t.Errorf("the status check as nobody (not in group fedmsg): %v %q, want UNKNOWN cannot write", err, out)
	}
}

// nrpeCommands parses NRPE "command[NAME]=LINE" definitions.
func nrpeCommands(t *testing.T, cfg string) map[string]string {
	t.Helper()
	commands := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^command\[([^\]]+)\]=(.+)$`).FindAllStringSubmatch(cfg, -1) {
		commands[m[1]] = m[2]
	}
	return commands
}

// secretLines returns the lines of out that hold the AMQP password (all lines with all), the
// password redacted: to show where it leaked without repeating it.
func secretLines(out string, all bool) string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if all || strings.Contains(line, amqpSecret) {
			lines = append(lines, strings.ReplaceAll(line, amqpSecret, "<password>"))
		}
	}
	return strings.Join(lines, "\n")
}
