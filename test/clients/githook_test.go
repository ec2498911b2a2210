package clients

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
)

// gitRepo runs git in a directory with a fixed identity and environment.
type gitRepo struct {
	t   *testing.T
	dir string
	env []string
}

func (g *gitRepo) git(args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = g.dir
	cmd.Env = append(os.Environ(), g.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// commit writes files (nil content deletes) and commits with the message
// kept verbatim; it returns the new commit id.
func (g *gitRepo) commit(files map[string]*string, message string, extra ...string) string {
	g.t.Helper()
	for name, content := range files {
		path := filepath.Join(g.dir, name)
		if content == nil {
			g.git("rm", "-q", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			g.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(*content), 0o644); err != nil {
			g.t.Fatal(err)
		}
		g.git("add", name)
	}
	msgFile := writeFile(g.t, g.t.TempDir(), "msg", message)
	g.git(append([]string{"commit", "-q", "--cleanup=verbatim", "-F", msgFile}, extra...)...)
	return strings.TrimSpace(g.git("rev-parse", "HEAD"))
}

func text(s string) *string { return &s }

type fileStats struct {
	Additions int `json:"additions"`
	Deletions int `json:"deletions"`
	Lines     int `json:"lines"`
}

type totalStats struct {
	Additions int `json:"additions"`
	Deletions int `json:"deletions"`
	Lines     int `json:"lines"`
	Files     int `json:"files"`
}

// gitCommit is msg["commit"] of a git.receive message.
type gitCommit struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Username string `json:"username"`
	Summary  string `json:"summary"`
	Message  string `json:"message"`
	Stats    struct {
		Files map[string]fileStats `json:"files"`
		Total totalStats           `json:"total"`
	} `json:"stats"`
	Rev    string `json:"rev"`
	Path   string `json:"path"`
	Repo   string `json:"repo"`
	Branch string `json:"branch"`
	Agent  string `json:"agent"`
	Seen   bool   `json:"seen"`
}

// TestGitHookPush pushes several commits and branches into a bare
// repository with contrib/git/post-receive installed and checks every
// message a Python subscriber receives through the relay.
func TestGitHookPush(t *testing.T) {
	clienttest.Require(t, "git")
	clienttest.Require(t, "bash")
	r := startRelay(t)
	sub := subscribe(t, r)

	conf := emptyConfigDir(t)
	writeFile(t, conf, "base.py", "config = dict(environment='prod')\n")
	writeFile(t, conf, "relay.py", fmt.Sprintf("config = dict(relay_inbound=%q)\n", r.Inbound))

	w, bare := hookedRepo(t, conf)

	tricky := "Fix \"quoting\" \\ in\tthe parser é 😀\n\nBody with \x01 control \x1b[31m chars,\r\n" +
		"a form feed \f, a backspace \b, DEL \x7f and a trailing space \n"
	weird := "dir/we\"ird \\ é.txt"

	c1 := w.commit(map[string]*string{"a.txt": text("1\n2\n3\n"), "logo.bin": text("\x00\x01binary")}, "Initial import\n")
	c2 := w.commit(map[string]*string{"a.txt": text("1\ntwo\n3\n"), weird: text("x\n")}, tricky)
	w.git("push", "-q", "origin", "main")

	w.git("checkout", "-q", "-b", "feature")
	c3 := w.commit(map[string]*string{"b.txt": text("b\n")}, "Feature work\n")
	w.git("checkout", "-q", "main")
	c4 := w.commit(map[string]*string{"a.txt": text("1\ntwo\n3\n4\n")}, "Main work\n")
	// One push updating main and creating feature: the new branch gets only
	// c3, not main's history.
	w.git("push", "-q", "origin", "main", "feature")

	w.git("merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
	c5 := strings.TrimSpace(w.git("rev-parse", "HEAD"))
	w.git("checkout", "-q", "-b", "release", "main")
	w.git("checkout", "-q", "main")
	// main (gaining c3 and the merge) and the new branch release (the merge)
	// in one push: the merge is sent twice, once marked seen.
	w.git("push", "-q", "origin", "main", "release")

	w.git("tag", "-a", "-m", "v1", "v1")
	w.git("push", "-q", "origin", "v1", ":feature") // a tag and a deletion: no messages
	c6 := w.commit(map[string]*string{"a.txt": nil}, "Drop a.txt\n")
	w.git("-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q", "--allow-empty",
		"--author", "Jos\xe9 <j@example.org>", "-m", "caf\xe9 latin-1")
	c7 := strings.TrimSpace(w.git("rev-parse", "HEAD"))
	w.git("push", "-q", "origin", "main")

	type commitWant struct {
		name, email, message string
		files                map[string]fileStats
	}
	const author, email = "Zbyněk \"Z\" Tester", "z@example.org"
	commits := map[string]commitWant{
		c1: {author, email, "Initial import\n", map[string]fileStats{"a.txt": {3, 0, 3}, "logo.bin": {0, 0, 0}}},
		c2: {author, email, tricky, map[string]fileStats{"a.txt": {1, 1, 2}, weird: {1, 0, 1}}},
		c3: {author, email, "Feature work\n", map[string]fileStats{"b.txt": {1, 0, 1}}},
		c4: {author, email, "Main work\n", map[string]fileStats{"a.txt": {1, 0, 1}}},
		// A merge is measured against each parent and summed.
		c5: {author, email, "Merge feature\n", map[string]fileStats{"a.txt": {1, 0, 1}, "b.txt": {1, 0, 1}}},
		c6: {author, email, "Drop a.txt\n", map[string]fileStats{"a.txt": {0, 4, 4}}},
		// Re-encoded to UTF-8 from the commit's declared encoding.
		c7: {"José", "j@example.org", "café latin-1\n", map[string]fileStats{}},
	}
	// Each push: the branch -> commits (oldest first) it must announce. The
	// order of branches within a push is git's, so seen is checked per push:
	// the first announcement of a commit is seen=false, any later one true.
	pushes := []map[string][]string{
		{"main": {c1, c2}},
		{"main": {c4}, "feature": {c3}},
		{"main": {c3, c5}, "release": {c5}},
		{"main": {c6, c7}},
	}
	absBare, _ := filepath.Abs(bare)
	for p, push := range pushes {
		got := map[string][]string{}
		announced := map[string]bool{}
		n := 0
		for _, revs := range push {
			n += len(revs)
		}
		for i := 0; i < n; i++ {
			c := nextCommit(t, sub)
			if c.Seen != announced[c.Rev] {
				t.Errorf("push %d: %s on %s: seen = %v after %v", p, c.Rev[:8], c.Branch, c.Seen, got)
			}
			announced[c.Rev] = true
			got[c.Branch] = append(got[c.Branch], c.Rev)
			want, ok := commits[c.Rev]
			if !ok {
				t.Fatalf("push %d: unexpected commit %s", p, c.Rev)
			}
			var total totalStats
			for _, f := range want.files {
				total.Additions += f.Additions
				total.Deletions += f.Deletions
				total.Lines += f.Lines
				total.Files++
			}
			checks := []struct {
				field     string
				got, want any
			}{
				{"message", c.Message, want.message},
				{"summary", c.Summary, strings.SplitN(want.message, "\n", 2)[0]},
				{"name", c.Name, want.name},
				{"email", c.Email, want.email},
				{"username", c.Username, "pusher"},
				{"agent", c.Agent, "pusher-agent"},
				{"path", c.Path, absBare},
				{"repo", c.Repo, "project"},
				{"files", c.Stats.Files, want.files},
				{"total", c.Stats.Total, total},
			}
			for _, ch := range checks {
				if !reflect.DeepEqual(ch.got, ch.want) {
					t.Errorf("push %d: %s on %s: %s = %#v, want %#v", p, c.Rev[:8], c.Branch, ch.field, ch.got, ch.want)
				}
			}
		}
		if !reflect.DeepEqual(got, push) {
			t.Errorf("push %d announced %v, want %v", p, got, push)
		}
	}
	sub.expectNone(500 * time.Millisecond)
}

// hookedRepo makes a bare repository "project.git" with the hook installed
// and a work repository (branch main) whose origin it is; pushes run the
// hook with the fedmsg config directory conf and our fedmsg-logger.
func hookedRepo(t *testing.T, conf string) (w *gitRepo, bare string) {
	t.Helper()
	root := t.TempDir()
	bare = filepath.Join(root, "project.git")
	run := func(args ...string) {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q", "--bare", bare)
	hook, err := os.ReadFile("../../contrib/git/post-receive")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(bare, "hooks"), "post-receive", string(hook))
	if err := os.Chmod(filepath.Join(bare, "hooks", "post-receive"), 0o755); err != nil {
		t.Fatal(err)
	}
	run("init", "-q", "-b", "main", filepath.Join(root, "work"))
	w = &gitRepo{t: t, dir: filepath.Join(root, "work"), env: []string{
		"GIT_AUTHOR_NAME=Zbyněk \"Z\" Tester", "GIT_AUTHOR_EMAIL=z@example.org",
		"GIT_COMMITTER_NAME=Committer", "GIT_COMMITTER_EMAIL=c@example.org",
		"GIT_CONFIG_NOSYSTEM=1", "HOME=" + root,
		// What the hook and the logger it runs see.
		"FEDMSG_CONFIG=" + conf, "FEDMSG_LOGGER=" + bin("fedmsg-logger"),
		"LOGNAME=pusher", "USER=pusher-agent",
	}}
	w.git("remote", "add", "origin", bare)
	return w, bare
}

// nextCommit returns msg["commit"] of the next git.receive message.
func nextCommit(t *testing.T, sub *subscriber) gitCommit {
	t.Helper()
	m := sub.next(10 * time.Second)
	if m.Topic != "org.fedoraproject.prod.git.receive" {
		t.Fatalf("topic %q", m.Topic)
	}
	var body struct {
		Msg struct {
			Commit gitCommit `json:"commit"`
		} `json:"msg"`
	}
	if err := json.Unmarshal([]byte(m.Body), &body); err != nil {
		t.Fatalf("%v\n%s", err, m.Body)
	}
	return body.Msg.Commit
}

// TestGitHookShellcheck lints the hook: it runs on servers we do not watch,
// where a bash pitfall would silently drop messages.
func TestGitHookShellcheck(t *testing.T) {
	shellcheck := clienttest.Require(t, "shellcheck")
	if out, err := exec.Command(shellcheck, "--shell=bash", "../../contrib/git/post-receive").CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}
