package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/internal/logging"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/relay"
	"github.com/fedora-infra/fedmsg-relay/internal/signing"
)

// keys installs the key material the configuration asks for in the relay: at
// start, on SIGHUP, and whenever the CRL refresher has a new CRL. Keys are
// never logged.
type keys struct {
	cfg *config.Config
	r   *relay.Relay
	log hclog.Logger
	crl *signing.CRLRefresher // nil without validation against a CRL

	mu      sync.Mutex // one install at a time: SIGHUP's and the refresher's
	signer  *signing.Signer
	base    *signing.Verifier // the CA and routing policy, without the CRL
	crlData []byte            // the CRL in use
}

// startKeys loads and installs the keys and starts refreshing the CRL in the
// background; stop ends the refresher.
func startKeys(cfg *config.Config, r *relay.Relay, log hclog.Logger, reg *metrics.Registry) (k *keys, stop func(), err error) {
	k = &keys{cfg: cfg, r: r, log: log}
	if cfg.ValidateSignatures && cfg.CRLSource() != "" {
		crlLog := log.Named(logging.NameCRL)
		k.crl, err = signing.NewCRLRefresher(signing.CRLOptions{
			Location:    cfg.CRLSource(),
			Cache:       cfg.CRLCache,
			CacheExpiry: cfg.CRLCacheExpiry,
			TLSCA:       cfg.CRLTLSCA,
			Install:     k.installCRL,
			Log:         crlLog,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("crl_location: %w", err)
		}
		reg.GaugeFunc("fedmsg_relay_crl_next_update_seconds", "nextUpdate of the CRL in use, seconds since the Unix epoch; 0 for none.",
			func() float64 {
				if next := k.crl.NextUpdate(); !next.IsZero() {
					return float64(next.Unix())
				}
				return 0
			})
		reg.GaugeFunc("fedmsg_relay_crl_stale", "1 while the CRL in use is past its nextUpdate (see crl_stale).",
			func() float64 { return boolGauge(k.crl.Stale()) })
	}
	if err := k.load(context.Background()); err != nil {
		return nil, nil, err
	}
	if k.crl == nil {
		return k, func() {}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.crl.Run(ctx)
	}()
	return k, func() { cancel(); <-done }, nil
}

// load reads the signing key, the CA and the CRL and installs them; SIGHUP
// calls it again. On error the relay keeps what it had, except that a CRL
// that cannot be refreshed leaves the one in use beside the new keys.
func (k *keys) load(ctx context.Context) error {
	signer, base, err := k.read()
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.signer, k.base = signer, base
	first := k.crl != nil && k.crlData == nil
	if !first {
		// Fails only if the CA changed under the CRL in use: the refresh below brings its new CRL.
		_, err = k.installLocked(k.crlData)
	}
	k.mu.Unlock()
	switch {
	case k.crl == nil:
		return err
	case first:
		return k.crl.Load(ctx)
	}
	if err := k.crl.Refresh(ctx); err != nil {
		return fmt.Errorf("refresh CRL, keeping the one in use: %w", err)
	}
	return nil
}

func (k *keys) read() (*signing.Signer, *signing.Verifier, error) {
	cfg := k.cfg
	var signer *signing.Signer
	var verifier *signing.Verifier
	if cfg.SignMessages {
		name := cfg.CertNames["signing_relay"]
		var err error
		if signer, err = signing.LoadSigner(cfg.SSLDir, name); err != nil {
			return nil, nil, fmt.Errorf("load signing key %q from %s: %w", name, cfg.SSLDir, err)
		}
		k.log.Info("signing messages", "certname", name, "subject", signer.Subject())
	}
	if cfg.ValidateSignatures {
		var err error
		if verifier, err = signing.LoadVerifier(cfg.CACert, "", cfg.RoutingPolicy, cfg.RoutingNitpicky); err != nil {
			return nil, nil, fmt.Errorf("load signature validation (ca_cert %s): %w", cfg.CACert, err)
		}
		k.log.Info("validating inbound signatures", "ca_cert", cfg.CACert, "crl", cfg.CRLSource(),
			"crl_stale", cfg.CRLStale, "routing_policy_topics", len(cfg.RoutingPolicy))
	}
	return signer, verifier, nil
}

// installCRL is the refresher's Install: the new CRL with the keys in use.
func (k *keys) installCRL(crl []byte) (time.Time, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.installLocked(crl)
}

// installLocked swaps the relay's keys for the signer and the verifier with
// crl (nil: none); k.mu is held.
func (k *keys) installLocked(crl []byte) (nextUpdate time.Time, err error) {
	c := &relay.Crypto{}
	if k.signer != nil { // a nil *Signer in the interface would not be nil
		c.Signer = k.signer
	}
	if v := k.base; v != nil {
		if crl != nil {
			if v, err = v.WithCRL(crl, k.cfg.CRLStale == config.CRLStaleAccept); err != nil {
				return time.Time{}, err
			}
			nextUpdate = v.CRLNextUpdate()
		}
		c.Verifier = v
	}
	k.crlData = crl
	k.r.SetCrypto(c)
	return nextUpdate, nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
