package signingtest

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// CRLServer is an https server publishing a CRL, as fedoraproject.org
// published fedmsg's, for tests of CRL downloads.
type CRLServer struct {
	*httptest.Server
	// CAFile holds the server's certificate (PEM), for a client to trust.
	CAFile string

	mu        sync.Mutex
	crl       []byte // nil: the site is down (503)
	downloads int
}

// NewCRLServer starts a server publishing crl, closed when the test ends.
func NewCRLServer(t testing.TB, crl []byte) *CRLServer {
	t.Helper()
	s := &CRLServer{crl: crl, CAFile: filepath.Join(t.TempDir(), "crl-server-ca.pem")}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.crl == nil {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		s.downloads++
		w.Write(s.crl)
	}))
	t.Cleanup(s.Close)
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(s.CAFile, cert, 0o644); err != nil {
		t.Fatalf("write CRL server certificate: %v", err)
	}
	return s
}

// Publish replaces the CRL served; nil takes the site down.
func (s *CRLServer) Publish(crl []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crl = crl
}

// Downloads returns how many times the CRL was served.
func (s *CRLServer) Downloads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.downloads
}
