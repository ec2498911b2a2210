package config

import (
	"path/filepath"
	"testing"
	"time"
)

func TestCRLKeys(t *testing.T) {
	dir := t.TempDir()
	crl := filepath.Join(dir, "crl.pem")
	tests := []struct {
		name string
		yaml string
		line int
		key  string
		frag string
	}{
		{"both", "crl: " + dir + "\ncrl_location: " + dir + "\n", 2, "crl_location", "not both"},
		{"URL without cache", "crl_location: https://fedoraproject.org/fedmsg/crl.pem\n", 0, "crl_cache", "required when crl_location is a URL"},
		{"relative cache", "crl_location: https://h/crl.pem\ncrl_cache: crl.pem\n", 2, "crl_cache", "want an absolute path"},
		{"scheme", "crl_location: ftp://h/crl.pem\n", 1, "crl_location", "want a file, https:// or http:// URL"},
		{"missing file", "crl_location: " + crl + "\n", 1, "crl_location", "no such file"},
		{"stale choice", "crl_stale: ignore\n", 1, "crl_stale", `"ignore": want accept or refuse`},
		{"negative expiry", "crl_cache_expiry: -1s\n", 1, "crl_cache_expiry", "want 0"},
		{"missing TLS CA", "crl_tls_ca: " + crl + "\n", 1, "crl_tls_ca", "no such file"},
	}
	for _, tt := range tests {
		found, err := loadFinds(t, dir, tt.name, tt.yaml, tt.line, tt.key, tt.frag)
		if !found {
			t.Errorf("%s: yaml %q: want line %d key %q containing %q; got:\n%v", tt.name, tt.yaml, tt.line, tt.key, tt.frag, err)
		}
	}

	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CRLStale != CRLStaleAccept || cfg.CRLCacheExpiry != time.Hour || cfg.CRLSource() != "" {
		t.Errorf("defaults: crl_stale %q, crl_cache_expiry %v, source %q", cfg.CRLStale, cfg.CRLCacheExpiry, cfg.CRLSource())
	}
}
