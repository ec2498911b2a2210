package signing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// CRLOptions says where the CRL comes from and how fresh it is kept, after
// fedmsg's crl_location, crl_cache and crl_cache_expiry.
type CRLOptions struct {
	// Location is a local file or an http:// or https:// URL.
	Location string
	// Cache keeps a downloaded CRL. Its modification time is the CRL's age,
	// so a restart within CacheExpiry does not download again (as fedmsg).
	Cache string
	// CacheExpiry is how old the CRL may get before it is downloaded (or the
	// file read) again; 0: only once it is past its nextUpdate.
	CacheExpiry time.Duration
	// TLSCA is a PEM file of the CAs trusted for an https:// Location; "":
	// the system's.
	TLSCA string
	// Install puts a CRL (PEM or DER) in use, or refuses it, and returns its
	// nextUpdate. A refused CRL is neither used nor cached.
	Install func(crl []byte) (nextUpdate time.Time, err error)
	Log     hclog.Logger
}

// Limits of one download, and the back-off between failed refreshes: a
// failure is logged once per attempt, so the back-off is also the log's
// rate limit.
const (
	crlFetchTimeout = 30 * time.Second
	crlMaxBytes     = 64 << 20
	crlRetryMin     = 10 * time.Second
	crlRetryMax     = 10 * time.Minute
)

// CRLRefresher keeps the CRL in use fresh, off the hot path: Run refreshes it
// in the background when it is older than CacheExpiry or past its
// nextUpdate, and installs it through Install only once it checks out.
type CRLRefresher struct {
	opts   CRLOptions
	client *http.Client
	now    func() time.Time

	mu         sync.Mutex   // one load or refresh at a time (Run and SIGHUP)
	nextUpdate atomic.Int64 // of the CRL in use, Unix seconds; 0: none
	loadedAt   atomic.Int64 // when the CRL in use was fetched or read, Unix ns
}

// NewCRLRefresher checks the options and builds the HTTP client; it fetches
// nothing.
func NewCRLRefresher(o CRLOptions) (*CRLRefresher, error) {
	if isURL(o.Location) && o.Cache == "" {
		return nil, fmt.Errorf("%s is a URL and no cache file is configured", o.Location)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("read CRL download CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", o.TLSCA)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &CRLRefresher{
		opts:   o,
		client: &http.Client{Transport: transport, Timeout: crlFetchTimeout},
		now:    time.Now,
	}, nil
}

func isURL(location string) bool {
	return strings.HasPrefix(location, "https://") || strings.HasPrefix(location, "http://")
}

// Load installs the CRL to start with. A local file is read. For a URL the
// cache is used while younger than CacheExpiry; else the CRL is downloaded,
// and if that fails a cached copy is used anyway (logged), so that a CRL
// server outage does not stop a restart.
func (c *CRLRefresher) Load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !isURL(c.opts.Location) {
		return c.readFile(c.opts.Location)
	}
	info, statErr := os.Stat(c.opts.Cache)
	if statErr == nil && c.opts.CacheExpiry > 0 && c.now().Sub(info.ModTime()) < c.opts.CacheExpiry {
		err := c.readFile(c.opts.Cache)
		if err == nil {
			return nil
		}
		c.opts.Log.Warn("cached CRL unusable; downloading", "cache", c.opts.Cache, "error", err)
	}
	err := c.download(ctx)
	if err == nil || statErr != nil {
		return err
	}
	if cacheErr := c.readFile(c.opts.Cache); cacheErr != nil {
		return fmt.Errorf("%w; cached copy: %w", err, cacheErr)
	}
	c.opts.Log.Error("download CRL failed; using the cached copy", "location", c.opts.Location, "cache", c.opts.Cache,
		"next_update", c.NextUpdate(), "error", err)
	return nil
}

// Refresh reads or downloads the CRL now and installs it; on error the CRL in
// use stays.
func (c *CRLRefresher) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if isURL(c.opts.Location) {
		return c.download(ctx)
	}
	return c.readFile(c.opts.Location)
}

// readFile installs the CRL in path, dated by the file's modification time.
func (c *CRLRefresher) readFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read CRL: %w", err)
	}
	return c.install(data, path)
}

func (c *CRLRefresher) install(data []byte, source string) error {
	next, err := c.opts.Install(data)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	if next.IsZero() {
		c.nextUpdate.Store(0)
	} else {
		c.nextUpdate.Store(next.Unix())
	}
	c.loadedAt.Store(c.now().UnixNano())
	return nil
}

// download fetches the CRL, installs it and only then replaces the cache, so
// the cache never holds a CRL that was refused.
func (c *CRLRefresher) download(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.opts.Location, nil)
	if err != nil {
		return fmt.Errorf("download CRL: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("download CRL: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download CRL %s: %s", c.opts.Location, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, crlMaxBytes+1))
	if err != nil {
		return fmt.Errorf("download CRL %s: %w", c.opts.Location, err)
	}
	if len(data) > crlMaxBytes {
		return fmt.Errorf("download CRL %s: larger than %d bytes", c.opts.Location, crlMaxBytes)
	}
	if err := c.install(data, c.opts.Location); err != nil {
		return err
	}
	if err := writeAtomic(c.opts.Cache, data); err != nil {
		// The CRL is in use; only a restart would miss the cached copy.
		c.opts.Log.Warn("write CRL cache", "error", err)
	}
	return nil
}

// writeAtomic replaces path with data so a reader never sees half a file.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644) // a CRL is public; fedmsg's clients read the cache too
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// NextUpdate returns the nextUpdate of the CRL in use; zero for none.
func (c *CRLRefresher) NextUpdate() time.Time {
	if s := c.nextUpdate.Load(); s != 0 {
		return time.Unix(s, 0)
	}
	return time.Time{}
}

// Stale reports whether the CRL in use is past its nextUpdate.
func (c *CRLRefresher) Stale() bool {
	next := c.NextUpdate()
	return !next.IsZero() && c.now().After(next)
}

// due returns when the CRL in use should next be refreshed: once older than
// CacheExpiry or past its nextUpdate, whichever is first; zero for never.
func (c *CRLRefresher) due() time.Time {
	var at time.Time
	if c.opts.CacheExpiry > 0 {
		at = time.Unix(0, c.loadedAt.Load()).Add(c.opts.CacheExpiry)
	}
	if next := c.NextUpdate(); !next.IsZero() && (at.IsZero() || next.Before(at)) {
		at = next.Add(time.Second) // nextUpdate has a resolution of a second
	}
	return at
}

var errStillStale = errors.New("the refreshed CRL is past its nextUpdate too")

// Run refreshes the CRL when due until ctx is done. Failures keep the CRL in
// use and are retried with a back-off; each one is logged, as an error once
// the CRL in use is stale.
func (c *CRLRefresher) Run(ctx context.Context) {
	retry := time.Duration(0)
	for {
		due := c.due()
		wait := time.Until(due)
		switch {
		case retry > 0:
			wait = retry
		case due.IsZero(): // a CRL without nextUpdate and no expiry: nothing to do
			<-ctx.Done()
			return
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		err := c.Refresh(ctx)
		if err == nil && c.Stale() {
			err = errStillStale
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			retry = 0
			c.opts.Log.Info("CRL refreshed", "location", c.opts.Location, "next_update", c.NextUpdate())
			continue
		}
		retry = min(max(2*retry, crlRetryMin), crlRetryMax)
		if c.Stale() {
			c.opts.Log.Error("CRL is past its nextUpdate and cannot be refreshed", "location", c.opts.Location,
				"next_update", c.NextUpdate(), "retry_in", retry, "error", err)
		} else {
			c.opts.Log.Warn("refresh CRL failed; keeping the one in use", "location", c.opts.Location,
				"next_update", c.NextUpdate(), "retry_in", retry, "error", err)
		}
	}
}
