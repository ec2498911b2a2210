package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/fedora-infra/fedmsg-relay/internal/fedmsgconf"
	"github.com/fedora-infra/fedmsg-relay/internal/signing"
)

// defaultSSLDir is fedmsg's default ssldir.
const defaultSSLDir = "/etc/pki/fedmsg"

// loadSigner returns the signer fedmsg.core would sign with, or nil when the
// config does not turn sign_messages on. As in fedmsg, the key pair is
// certnames["<cert prefix>.<short hostname>"] in ssldir; certPrefix "" means
// the config's cert_prefix, else "shell" (fedmsg-logger's --cert-prefix
// default). It is loaded before anything is dialled, so that a host that
// cannot sign sends nothing rather than unsigned messages to a signed bus.
func loadSigner(cfg fedmsgconf.Config, certPrefix string) (*signing.Signer, error) {
	on, err := cfg.Bool("sign_messages", false)
	if err != nil || !on {
		return nil, err
	}
	backend, err := cfg.String("crypto_backend", "x509")
	if err != nil {
		return nil, err
	}
	if backend != "x509" {
		return nil, fmt.Errorf("crypto_backend %q: only x509 signing is supported", backend)
	}
	if certPrefix == "" {
		if certPrefix, err = cfg.String("cert_prefix", "shell"); err != nil {
			return nil, err
		}
	}
	ssldir, err := cfg.String("ssldir", defaultSSLDir)
	if err != nil {
		return nil, err
	}
	certnames, err := cfg.StringMap("certnames")
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname for certnames: %w", err)
	}
	// Python's socket.gethostname().split('.', 1)[0].
	index := certPrefix + "." + strings.SplitN(host, ".", 2)[0]
	certname, ok := certnames[index]
	if !ok {
		return nil, fmt.Errorf("sign_messages is on but certnames has no %q (cert prefix %q): nothing sent", index, certPrefix)
	}
	if _, err := os.Stat(ssldir); err != nil {
		return nil, fmt.Errorf("ssldir: %w: nothing sent", err)
	}
	signer, err := signing.LoadSigner(ssldir, certname)
	if err != nil {
		return nil, fmt.Errorf("signing key certnames[%q] = %q: %w: nothing sent", index, certname, err)
	}
	return signer, nil
}
