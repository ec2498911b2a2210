package packagetest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
	"github.com/fedora-infra/fedmsg-relay/test/host"
)

const shippedLog = "/var/log/fedmsg/fedmsg-relay.log"

// TestLogrotateConfig checks the shipped directives and runs logrotate -d on
// a logrotate.d holding the file under the name the spec installs and Python
// fedmsg-base's /etc/logrotate.d/fedmsg (/var/log/fedmsg/*.log), as on a bus
// host with both: stderr must have no "error:" (such as a duplicate log
// entry), and the relay's log must be rotated by this file's block. The
// config rotates as user fedmsg ("su"), which this machine lacks: logrotate
// runs in a private mount namespace whose /etc/passwd and /etc/group have it.
func TestLogrotateConfig(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "logrotate", "unshare", "mount")
	conf := readFile(t, repoPath("rpm/fedmsg-relay.logrotate"))
	for _, tt := range []struct {
		directive string
		want      bool
	}{
		{shippedLog + " {", true},
		{"weekly", true}, {"compress", true}, {"delaycompress", true}, {"missingok", true},
		{"postrotate", true}, {"/usr/bin/systemctl reload fedmsg-relay.service", true},
		{"copytruncate", false}, {"ignoreduplicates", true},
	} {
		if got := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(tt.directive) + `(\s|$)`).MatchString(conf); got != tt.want {
			t.Errorf("rpm/fedmsg-relay.logrotate: %q present = %v, want %v", tt.directive, got, tt.want)
		}
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "logrotate -d with the fedmsg user needs root (private mount namespace)")
	}
	dir := t.TempDir()
	for _, f := range []struct{ name, add string }{
		{"passwd", "fedmsg:x:64999:64999:fedmsg relay:/:/usr/sbin/nologin\n"},
		{"group", "fedmsg:x:64999:\n"},
	} {
		data := readFile(t, "/etc/"+f.name) + f.add
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	installed := regexp.MustCompile(`(?m)^install .*rpm/fedmsg-relay\.logrotate %\{buildroot\}%\{_sysconfdir\}/logrotate\.d/(\S+)$`).
		FindStringSubmatch(readFile(t, repoPath("fedmsg-relay.spec")))
	if installed == nil {
		t.Fatal("fedmsg-relay.spec: no install line for rpm/fedmsg-relay.logrotate")
	}
	confDir := filepath.Join(dir, "logrotate.d")
	if err := os.Mkdir(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, repoPath("rpm/fedmsg-relay.logrotate"), filepath.Join(confDir, installed[1]))
	copyFile(t, repoPath("test/package/testdata/fedmsg-base.logrotate"), filepath.Join(confDir, "fedmsg"))
	mainConf := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(mainConf, []byte("include "+confDir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Logs for both files' patterns to match, on a /var/log of the namespace's own.
	varLog := filepath.Join(dir, "var-log")
	for _, f := range []string{"fedmsg-relay.log", "fedmsg-hub.log"} {
		if err := os.MkdirAll(filepath.Join(varLog, "fedmsg"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(varLog, "fedmsg", f), []byte("a line\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && mount --bind "$5" /var/log && exec logrotate -d -s "$3" "$4"`,
		"sh", filepath.Join(dir, "passwd"), filepath.Join(dir, "group"), filepath.Join(dir, "state"), mainConf, varLog)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil || strings.Contains(stderr.String(), "error:") {
		t.Errorf("logrotate -d: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	// This file's block must be the one that rotates the relay's log.
	if !regexp.MustCompile(`(?m)^rotating pattern: ` + regexp.QuoteMeta(shippedLog) + ` .*\n(.*\n)*?considering log ` + regexp.QuoteMeta(shippedLog) + `$`).
		MatchString(stderr.String() + stdout.String()) {
		t.Errorf("logrotate -d: %s is not rotated by its own block:\n%s%s", shippedLog, stdout.String(), stderr.String())
	}
}

// TestLogrotateWithRunningRelay rotates the log of a running relay three
// times with the shipped logrotate file (paths, user and reload command
// adapted to a temporary directory and a plain process), while a confirmed
// producer has the relay log one drop per message. Every message the relay
// answered must appear exactly once across the current and rotated logs, in
// file order, and every new log must start receiving lines after the SIGHUP:
// with copytruncate, or without the reopen, lines would go missing.
func TestLogrotateWithRunningRelay(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "logrotate", python)
	bin := command(t, "fedmsg-relay")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log", "fedmsg-relay.log")
	if err := os.Mkdir(filepath.Dir(logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	config := fmt.Sprintf(`relay_inbound: tcp://127.0.0.1:%d
relay_outbound: tcp://127.0.0.1:%d
relay_inbound_confirm: tcp://127.0.0.1:%d
log_file: %s
log_level: info
drop_log_interval: 0s
`, ports[0], ports[1], ports[2], logPath)
	configPath := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	relay := startProc(t, bin, "--config", configPath)
	testutil.WaitFor(t, 10*time.Second, "relay to log that it is relaying", func() bool {
		return strings.Contains(readOptional(logPath), "relaying")
	})

	// The shipped file, pointed at this relay; each replaced text must exist.
	rotateConf := readFile(t, repoPath("rpm/fedmsg-relay.logrotate"))
	for old, repl := range map[string]string{
		shippedLog: logPath,
		"/usr/bin/systemctl reload fedmsg-relay.service": "/bin/kill -HUP " + strconv.Itoa(relay.cmd.Process.Pid),
		"su fedmsg fedmsg":          "",
		"create 0600 fedmsg fedmsg": "create 0600 root root",
		"minsize 100k":              "", // -f ignores it; keep the file honest
	} {
		if !strings.Contains(rotateConf, old) {
			t.Fatalf("rpm/fedmsg-relay.logrotate no longer contains %q: update this test", old)
		}
		rotateConf = strings.ReplaceAll(rotateConf, old, repl)
	}
	rotateConfPath := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(rotateConfPath, []byte(rotateConf), 0o644); err != nil {
		t.Fatal(err)
	}

	const messages = 1500
	const prefix = "org.fedoraproject.test.rotate"
	producer := startProc(t, python, "testdata/peer.py", "refused",
		fmt.Sprintf("tcp://127.0.0.1:%d", ports[2]), strconv.Itoa(messages), prefix, "2")

	seq := regexp.MustCompile(regexp.QuoteMeta(prefix) + `\.(\d{6})`)
	const rotations = 3
	for i := 1; i <= rotations; i++ {
		// Rotate only once the current file has fresh lines, then wait until
		// the relay, after the postrotate SIGHUP, writes to the new file.
		testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("drop lines before rotation %d", i), func() bool {
			return len(seq.FindAllString(readOptional(logPath), -1)) >= 50
		})
		if out, err := exec.Command("logrotate", "-f", "-s", filepath.Join(dir, "state"), rotateConfPath).CombinedOutput(); err != nil {
			t.Fatalf("logrotate -f (rotation %d): %v\n%s", i, err, out)
		}
		testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("the relay to write to the new log after rotation %d", i), func() bool {
			cur := readOptional(logPath)
			return strings.Contains(cur, "reloaded") && seq.MatchString(cur)
		})
	}
	if err := producer.wait(60 * time.Second); err != nil || strings.TrimSpace(producer.out.String()) != strconv.Itoa(messages) {
		relayState := "still running"
		if err := relay.wait(0); err == nil || !strings.Contains(err.Error(), "did not exit") {
			relayState = fmt.Sprintf("exited (%v), output:\n%s", err, tail(relay.out.Bytes(), 3000))
		}
		// Which logs, if any, have the unanswered message (dropped or only
		// its reply lost)?
		var where []string
		if m := regexp.MustCompile(`message (\d+):`).FindStringSubmatch(producer.out.String()); m != nil {
			n, _ := strconv.Atoi(m[1])
			needle := fmt.Sprintf("%s.%06d", prefix, n)
			for _, f := range []string{logPath + ".3.gz", logPath + ".2.gz", logPath + ".1", logPath} {
				if _, err := os.Stat(f); err == nil && strings.Contains(strings.Join(readLog(t, f), "\n"), needle) {
					where = append(where, filepath.Base(f))
				}
			}
		}
		t.Fatalf("producer: %v\n%s\nunanswered message logged in: %v\nrelay %s\nrelay log tail:\n%s",
			err, producer.out.String(), where, relayState, tail([]byte(readOptional(logPath)), 1500))
	}
	relay.cmd.Process.Signal(syscall.SIGTERM)
	if err := relay.wait(20 * time.Second); err != nil {
		t.Fatalf("relay on SIGTERM: %v\n%s", err, relay.out.String())
	}

	// Oldest first: .3.gz, .2.gz, .1 (delaycompress), then the current file.
	files := []string{logPath + ".3.gz", logPath + ".2.gz", logPath + ".1", logPath}
	seen := make([]int, messages)
	last := -1
	for n, f := range files {
		lines := readLog(t, f)
		var first = -1
		for _, line := range lines {
			m := seq.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			i, _ := strconv.Atoi(m[1])
			if i >= messages {
				t.Fatalf("%s: unexpected message %d", f, i)
			}
			seen[i]++
			if i <= last {
				t.Errorf("%s: message %d logged after message %d", f, i, last)
			}
			if first < 0 {
				first = i
			}
			last = i
		}
		if first < 0 {
			t.Errorf("%s: no message lines", filepath.Base(f))
		}
		if n > 0 && !strings.Contains(strings.Join(lines, "\n"), "reloaded") {
			t.Errorf("%s: no \"reloaded\" line: the relay did not reopen it after SIGHUP", filepath.Base(f))
		}
	}
	for i, n := range seen {
		if n != 1 {
			t.Errorf("message %d logged %d times across the rotated logs, want once", i, n)
		}
	}
	if rest, _ := filepath.Glob(logPath + ".4*"); len(rest) > 0 {
		t.Errorf("more rotated files than rotations: %v", rest)
	}
}

// proc is a started process whose exit is observed once; cleanup kills it.
type proc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer // read only after wait
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %s", p.cmd.Path, timeout)
	}
}

// readLog returns the lines of a log file, gunzipping *.gz.
func readLog(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r = gz
	}
	var lines []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return lines
}

func readOptional(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
