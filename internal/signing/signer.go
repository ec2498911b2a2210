package signing

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
)

// Signer signs message bodies with one RSA key pair. It is immutable after
// LoadSigner, so it is safe for concurrent use; to reload keys, load a new
// Signer and swap the pointer (e.g. an atomic.Pointer[Signer]).
type Signer struct {
	key *rsa.PrivateKey
	// certificate is the message's "certificate" value, computed once: base64
	// of the re-encoded PEM certificate, in 76-character lines.
	certificate string
	subject     string
}

// LoadSigner reads <ssldir>/<certname>.key (PEM, PKCS#1 or PKCS#8 RSA, not
// encrypted) and <ssldir>/<certname>.crt (the first PEM certificate in the
// file; easy-rsa's text preamble is skipped) and checks that they match.
// Errors name the files, never their content.
func LoadSigner(ssldir, certname string) (*Signer, error) {
	if certname == "" || strings.ContainsRune(certname, '/') {
		return nil, fmt.Errorf("certname %q: must be a non-empty file name", certname)
	}
	keyPath := filepath.Join(ssldir, certname+".key")
	certPath := filepath.Join(ssldir, certname+".crt")

	key, err := loadRSAKey(keyPath)
	if err != nil {
		return nil, err
	}
	cert, err := loadCertificate(certPath)
	if err != nil {
		return nil, err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("%s does not hold the public key of %s", certPath, keyPath)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return &Signer{
		key:         key,
		certificate: splitLines(base64.StdEncoding.EncodeToString(certPEM)),
		subject:     cert.Subject.String(),
	}, nil
}

func loadRSAKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM private key found", path)
		}
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("%s: encrypted private keys are not supported", path)
		}
		var key any
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			// The parser's message does not include key material.
			return nil, fmt.Errorf("%s: parse private key: %w", path, err)
		}
		rsaKey, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: private key is %T, fedmsg signs with RSA", path, key)
		}
		return rsaKey, nil
	}
}

func loadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	cert, err := parsePEMCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// parsePEMCertificate returns the first CERTIFICATE block in data, as
// cryptography's load_pem_x509_certificate does.
func parsePEMCertificate(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM certificate found")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// Subject returns the signing certificate's subject, for logs.
func (s *Signer) Subject() string { return s.subject }

// Sign returns the body to publish: the message in body with crypto set to
// "x509" and the signature and certificate fields added, exactly as
// fedmsg.crypto.x509.sign builds the dict, written as fedmsg.publish writes it
// (Python's sorted, compact json.dumps). The signature is RSA PKCS#1 v1.5 with
// SHA-1 over the canonical JSON of the message without signature and
// certificate. A signature or certificate already in the body is replaced
// (fedmsg would have signed over the old ones and produced a message no
// validator accepts). Errors wrap ErrInvalidJSON, ErrNotReproducible or
// ErrNotObject.
func (s *Signer) Sign(body []byte) ([]byte, error) {
	msg, err := pyjson.Parse(body)
	if err != nil {
		return nil, err
	}
	if msg.Kind != pyjson.KindObject {
		return nil, ErrNotObject
	}
	msg = msg.Without("signature", "certificate")
	msg.Set("crypto", pyjson.StringValue("x509"))
	canonical := msg.AppendTo(make([]byte, 0, len(body)+32))

	digest := sha1.Sum(canonical)
	sig, err := rsa.SignPKCS1v15(nil, s.key, crypto.SHA1, digest[:])
	if err != nil {
		return nil, fmt.Errorf("rsa sign: %w", err)
	}
	msg.Set("signature", pyjson.StringValue(splitLines(base64.StdEncoding.EncodeToString(sig))))
	msg.Set("certificate", pyjson.StringValue(s.certificate))
	return msg.AppendTo(make([]byte, 0, len(canonical)+len(s.certificate)+512)), nil
}

// splitLines cuts base64 text into 76-character lines joined by "\n", with a
// final "\n", as M2Crypto did and fedmsg's x509_ng._prep_crypto_msg copies.
func splitLines(b64 string) string {
	var sb strings.Builder
	sb.Grow(len(b64) + len(b64)/76 + 1)
	for len(b64) > 76 {
		sb.WriteString(b64[:76])
		sb.WriteByte('\n')
		b64 = b64[76:]
	}
	sb.WriteString(b64)
	sb.WriteByte('\n')
	return sb.String()
}
