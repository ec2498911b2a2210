package signingtest

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestGenerate(t *testing.T) {
	p, err := Generate(Cert{Name: "good"}, Cert{Name: "revoked", Revoked: true}, Cert{Name: "untrusted", OtherCA: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := p.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	read := func(name string) *pem.Block {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			t.Fatalf("%s: no PEM", name)
		}
		return block
	}
	ca, err := x509.ParseCertificate(read(CAFile).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(read(CRLFile).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CRL not signed by the CA: %v", err)
	}
	revoked := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		revoked[e.SerialNumber.String()] = true
	}
	for _, tc := range []struct {
		name             string
		trusted, revoked bool
	}{
		{"good", true, false},
		{"revoked", true, true},
		{"untrusted", false, false},
	} {
		cert, err := x509.ParseCertificate(read(tc.name + ".crt").Bytes)
		if err != nil {
			t.Fatal(err)
		}
		key, err := x509.ParsePKCS1PrivateKey(read(tc.name + ".key").Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !cert.PublicKey.(*rsa.PublicKey).Equal(&key.PublicKey) || key.N.BitLen() != KeyBits {
			t.Errorf("%s: key does not match the certificate or is not %d bits", tc.name, KeyBits)
		}
		if cert.Subject.CommonName != CommonName(tc.name) {
			t.Errorf("%s: CN %q, want %q", tc.name, cert.Subject.CommonName, CommonName(tc.name))
		}
		if trusted := cert.CheckSignatureFrom(ca) == nil; trusted != tc.trusted {
			t.Errorf("%s: signed by the CA %v, want %v", tc.name, trusted, tc.trusted)
		}
		if got := revoked[cert.SerialNumber.String()]; got != tc.revoked {
			t.Errorf("%s: in the CRL %v, want %v", tc.name, got, tc.revoked)
		}
	}
	good, err := x509.ParseCertificate(read("good.crt").Bytes)
	if err != nil {
		t.Fatal(err)
	}
	update, err := p.CRL("good")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(update)
	next, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := next.CheckSignatureFrom(ca); err != nil || next.Number.Cmp(crl.Number) <= 0 ||
		len(next.RevokedCertificateEntries) != 1 || next.RevokedCertificateEntries[0].SerialNumber.Cmp(good.SerialNumber) != 0 {
		t.Errorf("CRL update: signature %v, number %v after %v, entries %v", err, next.Number, crl.Number, next.RevokedCertificateEntries)
	}
	if _, err := p.CRL("nobody"); err == nil {
		t.Error("CRL revoked an unknown certificate")
	}
	if _, err := Generate(Cert{Name: "a"}, Cert{Name: "a"}); err == nil {
		t.Error("Generate accepted a repeated name")
	}
}
