package main

import (
	"fmt"

	"github.com/fedora-infra/fedmsg-relay/internal/fedmsgconf"
	"github.com/fedora-infra/fedmsg-relay/internal/signing"
)

// fedmsg's defaults for the validation keys. The cache paths are where
// fedmsg kept its downloaded copy of an https:// location.
const (
	defaultCALocation = "/etc/pki/fedmsg/ca.crt"
	defaultCACache    = "/etc/pki/fedmsg/ca.crt"
	defaultCRLCache   = "/var/cache/fedmsg/crl.pem"
)

// loadVerifier builds the checks a validating fedmsg consumer applies, from
// the config's ca_cert_location, crl_location (no CRL when unset),
// routing_policy and routing_nitpicky.
func loadVerifier(cfg fedmsgconf.Config) (*signing.Verifier, error) {
	ca, err := location(cfg, "ca_cert_location", defaultCALocation, "ca_cert_cache", defaultCACache)
	if err != nil {
		return nil, err
	}
	crl, err := location(cfg, "crl_location", "", "crl_cache", defaultCRLCache)
	if err != nil {
		return nil, err
	}
	policy, err := cfg.ListMap("routing_policy")
	if err != nil {
		return nil, err
	}
	nitpicky, err := cfg.Bool("routing_nitpicky", false)
	if err != nil {
		return nil, err
	}
	v, err := signing.LoadVerifier(ca, crl, policy, nitpicky)
	if err != nil {
		return nil, fmt.Errorf("--validate: %w", err)
	}
	return v, nil
}

// location returns the local file for the location at key ("" when unset
// and def is ""), using the cache file at cacheKey for a URL.
func location(cfg fedmsgconf.Config, key, def, cacheKey, defCache string) (string, error) {
	loc, err := cfg.String(key, def)
	if err != nil || loc == "" {
		return "", err
	}
	cache, err := cfg.String(cacheKey, defCache)
	if err != nil {
		return "", err
	}
	path, err := signing.CachedLocation(loc, cache)
	if err != nil {
		return "", fmt.Errorf("--validate: %s: %w", key, err)
	}
	return path, nil
}
