package signing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCachedLocation(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := t.TempDir()
	cache := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(cache, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// fedmsg's fallback when it could not write the cache: ~/.local<cache>.
	alt := filepath.Join(dir, "crl.pem")
	if err := os.MkdirAll(filepath.Join(home, ".local", dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".local", alt), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		location, cache, want, wantErr string
	}{
		{"/etc/pki/fedmsg/ca.crt", cache, "/etc/pki/fedmsg/ca.crt", ""},
		{"https://example.org/fedmsg/ca.crt", cache, cache, ""},
		{"http://example.org/fedmsg/ca.crt", cache, cache, ""},
		{"https://example.org/fedmsg/crl.pem", alt, filepath.Join(home, ".local", alt), ""},
		{"https://example.org/fedmsg/crl.pem", filepath.Join(dir, "missing.pem"), "", "no cached copy is readable"},
		{"https://example.org/fedmsg/crl.pem", "", "", "no cache file is configured"},
	} {
		got, err := CachedLocation(tc.location, tc.cache)
		if got != tc.want || (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("CachedLocation(%q, %q) = %q, %v; want %q, error containing %q", tc.location, tc.cache, got, err, tc.want, tc.wantErr)
		}
	}
}
