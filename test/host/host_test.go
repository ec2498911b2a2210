package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMirrorIn(t *testing.T) {
	tests := []struct {
		name, sources, want string
	}{
		{"deb822", "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n", "http://deb.debian.org/debian"},
		{"deb822 security only", "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n", ""},
		{"deb822 suites before uris", "Suites: bookworm\nURIs: http://mirror.example/debian/\n", "http://mirror.example/debian/"},
		{"one-line", "deb http://ftp.example/debian bookworm main contrib\n", "http://ftp.example/debian"},
		{"one-line options", "deb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian bookworm main\n", "http://ftp.example/debian"},
		{"other suite", "deb http://ftp.example/debian trixie main\n", ""},
		{"not debian", "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n", ""},
		{"truncated", "deb\ndeb [x\n", ""},
	}
	for _, tt := range tests {
		if got := mirrorIn(tt.sources); got != tt.want {
			t.Errorf("%s: mirrorIn(%q) = %q, want %q", tt.name, tt.sources, got, tt.want)
		}
	}
}

// TestBoot boots a host, checks systemd is PID 1 in it, and that teardown
// removes its cgroups.
func TestBoot(t *testing.T) {
	var cgroup string
	t.Run("boot", func(t *testing.T) {
		h := Boot(t, "host-selftest")
		cgroup = h.cgroup
		if got := strings.TrimSpace(h.MustExec("cat", "/proc/1/comm")); got != "systemd" {
			t.Errorf("PID 1 in the container is %q, want systemd", got)
		}
		if err := h.WriteFile("/etc/selftest", []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := h.MustExec("stat", "-c", "%a %U", "/etc/selftest"); got != "600 root\n" {
			t.Errorf("written file: %q, want \"600 root\"", got)
		}
		if _, err := h.Exec("false"); err == nil {
			t.Error("Exec(false) returned no error")
		}
	})
	if cgroup == "" {
		return // skipped
	}
	for _, hier := range cgroupHierarchies {
		if _, err := os.Stat(filepath.Join(cgroupRoot, hier, cgroup)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s/%s still there after teardown (stat: %v)", hier, cgroup, err)
		}
	}
}
