package main

import (
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/internal/relay"
	"github.com/fedora-infra/fedmsg-relay/internal/signing"
)

// loadCrypto reads the key material the configuration asks for and installs
// it in the relay; on error the relay keeps what it had. Keys are never logged.
func loadCrypto(cfg *config.Config, r *relay.Relay, log hclog.Logger) error {
	c := &relay.Crypto{}
	if cfg.SignMessages {
		name := cfg.CertNames["signing_relay"]
		signer, err := signing.LoadSigner(cfg.SSLDir, name)
		if err != nil {
			return fmt.Errorf("load signing key %q from %s: %w", name, cfg.SSLDir, err)
		}
		c.Signer = signer
		log.Info("signing messages", "certname", name, "subject", signer.Subject())
	}
	if cfg.ValidateSignatures {
		verifier, err := signing.LoadVerifier(cfg.CACert, cfg.CRL, cfg.RoutingPolicy, cfg.RoutingNitpicky)
		if err != nil {
			return fmt.Errorf("load signature validation (ca_cert %s, crl %s): %w", cfg.CACert, cfg.CRL, err)
		}
		c.Verifier = verifier
		log.Info("validating inbound signatures", "ca_cert", cfg.CACert, "crl", cfg.CRL, "routing_policy_topics", len(cfg.RoutingPolicy))
	}
	r.SetCrypto(c)
	return nil
}
