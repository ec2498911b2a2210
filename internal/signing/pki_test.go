package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A test PKI made with crypto/x509 at test time, once per test binary: a CA,
// certificates issued by it (two good signers, a revoked one, an expired one,
// one with an ECDSA key), a CRL revoking one serial, and a certificate from
// another CA. Private keys only ever live in t.TempDir().
type testPKI struct {
	ca    *x509.Certificate
	caKey *rsa.PrivateKey
	crl   []byte // PEM
	certs map[string]testCert
}

type testCert struct {
	key  any // *rsa.PrivateKey or *ecdsa.PrivateKey
	cert *x509.Certificate
}

// Certificate names (fedmsg certnames) and their common names.
const (
	certSigner    = "signing_relay" // good, PKCS#1 key, easy-rsa style .crt
	certSecond    = "shell-app01"   // good, PKCS#8 key
	certRevoked   = "revoked"       // serial in the CRL
	certExpired   = "expired"       // NotAfter in the past
	certUntrusted = "untrusted"     // issued by another CA with the same name
	certECDSA     = "ecdsa"         // issued by the CA, not an RSA key
	revokedSerial = 666
	testCN        = ".example.test" // suffix of every common name
)

var (
	pkiOnce sync.Once
	pki     *testPKI
	pkiErr  error
)

func getPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pki, pkiErr = newPKI() })
	if pkiErr != nil {
		t.Fatalf("test PKI: %v", pkiErr)
	}
	return pki
}

func newPKI() (*testPKI, error) {
	now := time.Now()
	caName := pkix.Name{CommonName: "Test fedmsg CA", Organization: []string{"fedmsg-relay tests"}}
	newCA := func() (*x509.Certificate, *rsa.PrivateKey, error) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: caName,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, nil, err
		}
		cert, err := x509.ParseCertificate(der)
		return cert, key, err
	}
	ca, caKey, err := newCA()
	if err != nil {
		return nil, err
	}
	otherCA, otherKey, err := newCA()
	if err != nil {
		return nil, err
	}
	signerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	secondKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	p := &testPKI{ca: ca, caKey: caKey, certs: map[string]testCert{}}
	leaves := []struct {
		name      string
		serial    int64
		key       any
		notAfter  time.Time
		issuer    *x509.Certificate
		issuerKey *rsa.PrivateKey
	}{
		{certSigner, 2, signerKey, now.Add(time.Hour), ca, caKey},
		{certSecond, 3, secondKey, now.Add(time.Hour), ca, caKey},
		{certRevoked, revokedSerial, signerKey, now.Add(time.Hour), ca, caKey},
		{certExpired, 5, signerKey, now.Add(-time.Minute), ca, caKey},
		{certUntrusted, 2, signerKey, now.Add(time.Hour), otherCA, otherKey},
		{certECDSA, 7, ecKey, now.Add(time.Hour), ca, caKey},
	}
	for _, l := range leaves {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(l.serial),
			Subject:      pkix.Name{CommonName: l.name + testCN},
			NotBefore:    now.Add(-2 * time.Minute), NotAfter: l.notAfter,
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		var pub any
		switch k := l.key.(type) {
		case *rsa.PrivateKey:
			pub = &k.PublicKey
		case *ecdsa.PrivateKey:
			pub = &k.PublicKey
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, l.issuer, pub, l.issuerKey)
		if err != nil {
			return nil, err
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		p.certs[l.name] = testCert{key: l.key, cert: cert}
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(revokedSerial), RevocationTime: now.Add(-time.Hour)},
		},
	}, ca, caKey)
	if err != nil {
		return nil, err
	}
	p.crl = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})
	return p, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// writeSSLDir lays the PKI out as fedmsg's ssldir: ca.crt, crl.pem and
// <certname>.key/.crt for every leaf. The signer's .crt starts with a text
// dump like easy-rsa's, and its key is PKCS#1; the others are PKCS#8.
func (p *testPKI) writeSSLDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", certPEM(p.ca))
	write("crl.pem", p.crl)
	for name, c := range p.certs {
		var block *pem.Block
		if k, ok := c.key.(*rsa.PrivateKey); ok && name == certSigner {
			block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
		} else {
			der, err := x509.MarshalPKCS8PrivateKey(c.key)
			if err != nil {
				t.Fatal(err)
			}
			block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
		}
		write(name+".key", pem.EncodeToMemory(block))
		crt := certPEM(c.cert)
		if name == certSigner {
			crt = append([]byte("Certificate:\n    Data:\n        Version: 3 (0x2)\n        Serial Number: 2 (0x2)\n"), crt...)
		}
		write(name+".crt", crt)
	}
	return dir
}
