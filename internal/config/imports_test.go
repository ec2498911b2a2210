package config

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The layering rule (docs/architecture.md): only cmd/ maps the configuration
// to the options of the packages it wires, so no package under internal/
// depends on this one, directly or through another, tests included.
func TestNoInternalPackageImportsConfig(t *testing.T) {
	const module = "github.com/fedora-infra/fedmsg-relay"
	const self = module + "/internal/config"
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", "-test", "-f",
		`{{.ImportPath}}|{{join .Imports " "}}`, module+"/internal/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
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
