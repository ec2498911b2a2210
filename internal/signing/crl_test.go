package signing

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// crlFixture is a refresher whose Install builds verifiers the way the relay
// does, keeping the one in use, and signers to probe it with.
type crlFixture struct {
	pki      *signingtest.PKI
	dir      string
	base     *Verifier
	current  atomic.Pointer[Verifier]
	log      *testutil.SyncBuffer
	good     *Signer
	producer *Signer // revoked by the second CRL
}

const (
	crlGood     = "good"
	crlProducer = "producer"
)

var (
	crlPKIOnce sync.Once
	crlPKI     *signingtest.PKI
	crlPKIErr  error
)

func newCRLFixture(t *testing.T) *crlFixture {
	crlPKIOnce.Do(func() {
		crlPKI, crlPKIErr = signingtest.Generate(signingtest.Cert{Name: crlGood}, signingtest.Cert{Name: crlProducer})
	})
	if crlPKIErr != nil {
		t.Fatal(crlPKIErr)
	}
	f := &crlFixture{pki: crlPKI, dir: t.TempDir(), log: &testutil.SyncBuffer{}}
	if err := f.pki.WriteDir(f.dir); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.base, err = LoadVerifier(filepath.Join(f.dir, signingtest.CAFile), "", nil, false); err != nil {
		t.Fatal(err)
	}
	f.good = loadTestSigner(t, f.dir, crlGood)
	f.producer = loadTestSigner(t, f.dir, crlProducer)
	return f
}

func (f *crlFixture) crl(t *testing.T, nextUpdate time.Time, revoke ...string) []byte {
	t.Helper()
	crl, err := f.pki.CRLUntil(nextUpdate, revoke...)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func (f *crlFixture) refresher(t *testing.T, o CRLOptions, acceptStale bool) *CRLRefresher {
	t.Helper()
	o.Log = hclog.New(&hclog.LoggerOptions{Output: f.log, Level: hclog.Debug})
	o.Install = func(crl []byte) (time.Time, error) {
		v, err := f.base.WithCRL(crl, acceptStale)
		if err != nil {
			return time.Time{}, err
		}
		f.current.Store(v)
		return v.CRLNextUpdate(), nil
	}
	r, err := NewCRLRefresher(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// verify signs a message as signer and checks it with the verifier in use.
func (f *crlFixture) verify(t *testing.T, signer *Signer) error {
	t.Helper()
	body, err := signer.Sign(message(topicLogger, `{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	return f.current.Load().Verify(topicLogger, body)
}

func runRefresher(t *testing.T, r *CRLRefresher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// A CRL downloaded over https from a server trusted through TLSCA expires;
// the refresher fetches the new one in the background, installs it (the
// certificate it revokes is refused) and caches it.
func TestCRLRefreshedAtNextUpdate(t *testing.T) {
	f := newCRLFixture(t)
	first := f.crl(t, time.Now().Add(2*time.Second))
	srv := signingtest.NewCRLServer(t, first)
	cache := filepath.Join(t.TempDir(), "crl.pem")
	// Accepting a stale CRL, so that a loaded machine that reaches the first
	// check after the first CRL's nextUpdate still passes it.
	r := f.refresher(t, CRLOptions{Location: srv.URL + "/crl.pem", Cache: cache, CacheExpiry: time.Hour, TLSCA: srv.CAFile}, true)
	if err := r.Load(context.Background()); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, _ := os.ReadFile(cache); !bytes.Equal(got, first) {
		t.Errorf("cache does not hold the downloaded CRL")
	}
	if err := f.verify(t, f.producer); err != nil {
		t.Fatalf("before the refresh: %v", err)
	}
	second := f.crl(t, time.Now().Add(24*time.Hour), crlProducer)
	srv.Publish(second)
	runRefresher(t, r)
	// The log line comes last, after the CRL is installed and cached: the
	// new nextUpdate alone shows before the cache is written.
	testutil.WaitFor(t, 30*time.Second, "the second CRL", func() bool { return strings.Contains(f.log.String(), "CRL refreshed") })
	if !r.NextUpdate().After(time.Now().Add(time.Hour)) {
		t.Errorf("next update %v after the refresh, want the second CRL's", r.NextUpdate())
	}
	if err := f.verify(t, f.producer); !errors.Is(err, ErrRevokedCert) {
		t.Errorf("producer after the refresh: %v, want %v", err, ErrRevokedCert)
	}
	if err := f.verify(t, f.good); err != nil {
		t.Errorf("good certificate after the refresh: %v", err)
	}
	if got, _ := os.ReadFile(cache); !bytes.Equal(got, second) {
		t.Errorf("cache does not hold the refreshed CRL")
	}
	if r.Stale() {
		t.Errorf("stale=%v, log:\n%s", r.Stale(), f.log)
	}
}

// A download that fails keeps the CRL in use and logs; once that CRL is past
// its nextUpdate the refresher says so loudly, and the verifier follows the
// stale choice: refuse everything, or keep refusing only what it lists.
func TestCRLStaleWhenRefreshFails(t *testing.T) {
	for _, accept := range []bool{false, true} {
		t.Run(map[bool]string{false: "refuse", true: "accept"}[accept], func(t *testing.T) {
			f := newCRLFixture(t)
			nextUpdate := time.Now().Add(2 * time.Second).Truncate(time.Second)
			srv := signingtest.NewCRLServer(t, f.crl(t, nextUpdate, crlProducer))
			r := f.refresher(t, CRLOptions{
				Location: srv.URL, Cache: filepath.Join(t.TempDir(), "crl.pem"), TLSCA: srv.CAFile,
			}, accept)
			if err := r.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			srv.Publish(nil)
			runRefresher(t, r)
			testutil.WaitFor(t, 30*time.Second, "the failure to be logged", func() bool {
				return strings.Contains(f.log.String(), "CRL is past its nextUpdate and cannot be refreshed")
			})
			if !r.Stale() || !r.NextUpdate().Equal(nextUpdate) {
				t.Errorf("stale=%v next=%v, want the old CRL (%v) kept and stale", r.Stale(), r.NextUpdate(), nextUpdate)
			}
			if !strings.Contains(f.log.String(), "503") {
				t.Errorf("log lacks the server's answer:\n%s", f.log)
			}
			if err := f.verify(t, f.producer); !errors.Is(err, map[bool]error{false: ErrStaleCRL, true: ErrRevokedCert}[accept]) {
				t.Errorf("revoked certificate with a stale CRL: %v", err)
			}
			err := f.verify(t, f.good)
			if accept && err != nil || !accept && !errors.Is(err, ErrStaleCRL) {
				t.Errorf("good certificate with a stale CRL: %v", err)
			}
		})
	}
}

// Load uses a cache younger than CacheExpiry without downloading, falls back
// to the cache when the server fails, and neither installs nor caches a
// download that is not a CRL of the CA. Without TLSCA the test server is not
// trusted.
func TestCRLLoad(t *testing.T) {
	f := newCRLFixture(t)
	good := f.crl(t, time.Now().Add(time.Hour))
	srv := signingtest.NewCRLServer(t, good)
	cache := filepath.Join(t.TempDir(), "crl.pem")
	opts := CRLOptions{Location: srv.URL, Cache: cache, CacheExpiry: time.Hour, TLSCA: srv.CAFile}
	if err := f.refresher(t, opts, false).Load(context.Background()); err != nil || srv.Downloads() != 1 {
		t.Fatalf("first Load: %v, %d downloads", err, srv.Downloads())
	}
	if err := f.refresher(t, opts, false).Load(context.Background()); err != nil || srv.Downloads() != 1 {
		t.Errorf("Load with a fresh cache: %v, %d downloads, want 1", err, srv.Downloads())
	}

	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(cache, old, old); err != nil {
		t.Fatal(err)
	}
	srv.Publish(nil)
	r := f.refresher(t, opts, false)
	if err := r.Load(context.Background()); err != nil || r.NextUpdate().IsZero() {
		t.Errorf("Load with a server down and an old cache: %v (next %v), want the cache", err, r.NextUpdate())
	}
	if !strings.Contains(f.log.String(), "using the cached copy") {
		t.Errorf("fallback to the cache not logged:\n%s", f.log)
	}

	srv.Publish([]byte("<html>not a CRL</html>"))
	if err := r.Refresh(context.Background()); err == nil {
		t.Error("Refresh installed a download that is not a CRL")
	}
	if got, _ := os.ReadFile(cache); !bytes.Equal(got, good) {
		t.Error("a refused download replaced the cache")
	}

	opts.Cache, opts.TLSCA = filepath.Join(t.TempDir(), "crl.pem"), ""
	srv.Publish(good)
	if err := f.refresher(t, opts, false).Load(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Load from a server signed by an untrusted CA: %v, want a TLS error", err)
	}
	if _, err := NewCRLRefresher(CRLOptions{Location: srv.URL}); err == nil {
		t.Error("a URL without a cache file was accepted")
	}
}

// A local CRL file is read again when it is due, as a new file dropped in
// place by whatever keeps it current.
func TestCRLFileReread(t *testing.T) {
	f := newCRLFixture(t)
	path := filepath.Join(t.TempDir(), "crl.pem")
	if err := os.WriteFile(path, f.crl(t, time.Now().Add(2*time.Second)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.refresher(t, CRLOptions{Location: path}, false)
	if err := r.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".new", f.crl(t, time.Now().Add(24*time.Hour), crlProducer), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	runRefresher(t, r)
	testutil.WaitFor(t, 30*time.Second, "the new file", func() bool { return r.NextUpdate().After(time.Now().Add(time.Hour)) })
	if err := f.verify(t, f.producer); !errors.Is(err, ErrRevokedCert) {
		t.Errorf("producer after the new file: %v, want %v", err, ErrRevokedCert)
	}
}
