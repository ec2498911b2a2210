package packagetest

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/test/host"
)

// manPages are the pages under docs/man and the command each documents.
var manPages = []struct{ page, command string }{
	{"fedmsg-relay.8", "fedmsg-relay"},
	{"fedmsg-logger.1", "fedmsg-logger"},
	{"fedmsg-tail.1", "fedmsg-tail"},
	{"relay.yaml.5", ""},
}

// TestManPagesDocumentFlags runs each command's --help and checks that every
// flag it lists is documented in its page as **--flag**, so a new flag
// cannot ship undocumented.
func TestManPagesDocumentFlags(t *testing.T) {
	t.Parallel()
	flag := regexp.MustCompile(`(?m)^\s+-([a-z0-9][a-z0-9-]*)\b`)
	for _, m := range manPages {
		if m.command == "" {
			continue
		}
		// --help exits 0 (the clients) or 2 (the relay's flag package); the
		// listing is what counts.
		out, _ := exec.Command(command(t, m.command), "--help").CombinedOutput()
		flags := flag.FindAllStringSubmatch(string(out), -1)
		if len(flags) < 3 {
			t.Fatalf("%s --help: only %d flags parsed:\n%s", m.command, len(flags), out)
		}
		page := readFile(t, repoPath("docs/man/"+m.page+".md"))
		for _, f := range flags {
			if !strings.Contains(page, "**--"+f[1]+"**") {
				t.Errorf("docs/man/%s.md: flag --%s (in %s --help) is not documented as **--%s**", m.page, f[1], m.command, f[1])
			}
		}
	}
}

// TestManPageDocumentsConfigKeys checks that relay.yaml(5) documents, as
// `key`, every key the relay accepts: the yaml tags of internal/config's
// Config, nested sections as dotted paths (amqp.consume.queue).
func TestManPageDocumentsConfigKeys(t *testing.T) {
	t.Parallel()
	keys := yamlKeys(reflect.TypeOf(config.Config{}), "")
	if len(keys) < 40 {
		t.Fatalf("only %d keys found in config.Config: %v", len(keys), keys)
	}
	page := readFile(t, repoPath("docs/man/relay.yaml.5.md"))
	for _, k := range keys {
		if !strings.Contains(page, "`"+k+"`") {
			t.Errorf("docs/man/relay.yaml.5.md: config key %s is not documented as `%s`", k, k)
		}
	}
}

// yamlKeys lists the keys of a config struct, recursing into sections (the
// nested structs the config decodes key by key).
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		keys = append(keys, prefix+name)
		if ft := t.Field(i).Type; ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
			keys = append(keys, yamlKeys(ft, prefix+name+".")...)
		}
	}
	return keys
}

// TestManPagesBuild converts every page with go-md2man, as the spec does,
// and checks the roff's title line names the page and its section.
func TestManPagesBuild(t *testing.T) {
	t.Parallel()
	host.NeedTools(t, "go-md2man")
	dir := t.TempDir()
	for _, m := range manPages {
		out := filepath.Join(dir, m.page)
		run(t, "go-md2man", "-in", repoPath("docs/man/"+m.page+".md"), "-out", out)
		name, section := m.page[:strings.LastIndexByte(m.page, '.')], m.page[strings.LastIndexByte(m.page, '.')+1:]
		want := ".TH " + strings.ToUpper(name) + " " + section + " "
		if roff := readFile(t, out); !strings.Contains(roff, "\n"+want) {
			t.Errorf("go-md2man %s.md: no %q line:\n%s", m.page, want, head(roff, 5))
		}
	}
}
