// Package signingtest makes a throw-away fedmsg PKI for tests: a CA, RSA
// signer certificates issued by it (or by a second CA with the same name),
// and a CRL, laid out as fedmsg's ssldir. Everything is generated at test
// time with crypto/x509; no private key is ever committed.
package signingtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// KeyBits is the RSA key size of every key: fedmsg's, and what the
// benchmarks must measure.
const KeyBits = 2048

// File names in the directory WriteDir fills, as fedmsg's ssldir has them.
const (
	CAFile  = "ca.crt"
	CRLFile = "crl.pem"
)

// Cert describes one certificate to issue.
type Cert struct {
	Name    string // fedmsg certname: <Name>.key and <Name>.crt
	Revoked bool   // its serial is in the CRL
	OtherCA bool   // issued by an untrusted CA whose subject equals the trusted one's
}

// CommonName is the subject CN of the certificate named name, what routing
// policies list.
func CommonName(name string) string { return name + ".example.test" }

// PKI is a generated CA with its certificates.
type PKI struct {
	CA        *x509.Certificate
	caKey     *rsa.PrivateKey
	crl       []byte // PEM, signed by CA: the certificates marked Revoked
	crlNumber int64
	leaves    map[string]leaf
}

type leaf struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

// Generate makes the CA, a second untrusted CA, the certificates and a CRL
// listing the revoked ones. Each certificate has its own key.
func Generate(certs ...Cert) (*PKI, error) {
	now := time.Now()
	ca, caKey, err := newCA(now)
	if err != nil {
		return nil, err
	}
	otherCA, otherKey, err := newCA(now)
	if err != nil {
		return nil, err
	}
	p := &PKI{CA: ca, caKey: caKey, leaves: make(map[string]leaf, len(certs))}
	var revoked []string
	for i, c := range certs {
		if _, dup := p.leaves[c.Name]; dup || c.Name == "" {
			return nil, fmt.Errorf("certificate name %q: empty or repeated", c.Name)
		}
		serial := big.NewInt(int64(i) + 2) // 1 is the CA's
		issuer, issuerKey := ca, caKey
		if c.OtherCA {
			issuer, issuerKey = otherCA, otherKey
		}
		key, err := rsa.GenerateKey(rand.Reader, KeyBits)
		if err != nil {
			return nil, fmt.Errorf("generate key for %s: %w", c.Name, err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: CommonName(c.Name)},
			NotBefore:    now.Add(-2 * time.Minute), NotAfter: now.Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
		if err != nil {
			return nil, fmt.Errorf("issue %s: %w", c.Name, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", c.Name, err)
		}
		p.leaves[c.Name] = leaf{key: key, cert: cert}
		if c.Revoked {
			revoked = append(revoked, c.Name)
		}
	}
	if p.crl, err = p.CRL(revoked...); err != nil {
		return nil, err
	}
	return p, nil
}

// CRL returns a new CRL (PEM) from the CA revoking the named certificates,
// numbered after every CRL made before, as a CA publishes updates. It is
// valid for a day. Not safe for concurrent use.
func (p *PKI) CRL(revoke ...string) ([]byte, error) {
	return p.CRLUntil(time.Now().Add(24*time.Hour), revoke...)
}

// CRLUntil is CRL with the given nextUpdate, for tests of a CRL's expiry.
func (p *PKI) CRLUntil(nextUpdate time.Time, revoke ...string) ([]byte, error) {
	now := time.Now()
	var entries []x509.RevocationListEntry
	for _, name := range revoke {
		l, ok := p.leaves[name]
		if !ok {
			return nil, fmt.Errorf("revoke %q: no such certificate", name)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: l.cert.SerialNumber, RevocationTime: now.Add(-time.Minute)})
	}
	p.crlNumber++
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(p.crlNumber),
		ThisUpdate: now.Add(-time.Hour), NextUpdate: nextUpdate,
		RevokedCertificateEntries: entries,
	}, p.CA, p.caKey)
	if err != nil {
		return nil, fmt.Errorf("create CRL: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

// newCA makes a self-signed CA. Both CAs of a PKI share the subject, so a
// certificate from the wrong one differs only by its signature.
func newCA(now time.Time) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Test fedmsg CA", Organization: []string{"fedmsg-relay tests"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA: %w", err)
	}
	return cert, key, nil
}

// KeyPEM returns the private key of the certificate named name (PKCS#1 PEM,
// as easy-rsa writes it), or nil if there is none.
func (p *PKI) KeyPEM(name string) []byte {
	l, ok := p.leaves[name]
	if !ok {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(l.key)})
}

// CertPEM returns the certificate named name as PEM, or nil if there is none.
func (p *PKI) CertPEM(name string) []byte {
	l, ok := p.leaves[name]
	if !ok {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.cert.Raw})
}

// WriteDir writes the PKI into dir as fedmsg's ssldir: CAFile, CRLFile and
// <name>.key (mode 0600) and <name>.crt for every certificate.
func (p *PKI) WriteDir(dir string) error {
	files := map[string][]byte{
		CAFile:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.CA.Raw}),
		CRLFile: p.crl,
	}
	for name := range p.leaves {
		files[name+".key"] = p.KeyPEM(name)
		files[name+".crt"] = p.CertPEM(name)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write test PKI: %w", err)
		}
	}
	return nil
}
