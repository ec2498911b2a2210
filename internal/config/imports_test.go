package config

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/fedora-infra/fedmsg-relay"

// goList runs `go list -deps` with args and returns its output.
func goList(t *testing.T, args ...string) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, append([]string{"list", "-deps"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	return string(out)
}

// The layering rule (docs/architecture.md): only cmd/ maps the configuration
// to the options of the packages it wires, so no package under internal/
// depends on this one, directly or through another, tests included.
func TestNoInternalPackageImportsConfig(t *testing.T) {
	const self = module + "/internal/config"
	out := goList(t, "-test", "-f", `{{.ImportPath}}|{{join .Imports " "}}`, module+"/internal/...")
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		pkg, imports, _ := strings.Cut(line, "|")
		// Test variants are listed as "p [p.test]"; config's own tests may import it.
		name, _, _ := strings.Cut(pkg, " ")
		if !strings.HasPrefix(name, module+"/internal/") || name == self || strings.HasPrefix(name, self+"_test") || name == self+".test" {
			continue
		}
		checked++
		for _, imp := range strings.Fields(imports) {
			if imp == self {
				t.Errorf("%s imports %s: map the configuration to the package's options in cmd/ instead", pkg, self)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages; go list output:\n%s", checked, out)
	}
}

// Test helpers stay out of the daemon: it does not link package testing.
func TestDaemonDoesNotLinkTesting(t *testing.T) {
	for _, dep := range strings.Fields(goList(t, module+"/cmd/fedmsg-relay")) {
		if dep == "testing" {
			t.Fatal("cmd/fedmsg-relay links package testing: move the helper that imports it to a test-only package")
		}
	}
}
