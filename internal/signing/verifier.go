package signing

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
)

// Verifier validates signed messages as fedmsg.crypto.x509_ng.validate does,
// with the CA and CRL loaded once. It is immutable after LoadVerifier, so it
// is safe for concurrent use; to reload, load a new one and swap the pointer.
type Verifier struct {
	ca       *x509.Certificate
	crl      *x509.RevocationList // nil: no CRL configured
	revoked  map[string]bool      // serial numbers in the CRL, as decimal text
	policy   map[string][]string  // topic -> allowed certificate common names
	nitpicky bool
	// acceptStale keeps checking against a CRL past its nextUpdate instead of
	// refusing every message (OpenSSL's and fedmsg's behaviour).
	acceptStale bool
	now         func() time.Time
}

// LoadVerifier reads the CA certificate (PEM) and, unless crl is "", a PEM or
// DER CRL that must be signed by that CA. routingPolicy maps a topic to the
// common names allowed to sign messages on it; with nitpicky, topics missing
// from the policy are refused (fedmsg's routing_nitpicky). The policy is copied.
func LoadVerifier(caCert, crl string, routingPolicy map[string][]string, nitpicky bool) (*Verifier, error) {
	ca, err := loadCertificate(caCert)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if ca.BasicConstraintsValid && !ca.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate (basicConstraints CA:FALSE)", caCert)
	}
	if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: CA key usage does not allow certificate signing", caCert)
	}
	v := &Verifier{ca: ca, nitpicky: nitpicky, now: time.Now, policy: make(map[string][]string, len(routingPolicy))}
	for topic, names := range routingPolicy {
		v.policy[topic] = slices.Clone(names)
	}
	if crl == "" {
		return v, nil
	}
	data, err := os.ReadFile(crl)
	if err != nil {
		return nil, fmt.Errorf("read CRL: %w", err)
	}
	if v, err = v.WithCRL(data, false); err != nil {
		return nil, fmt.Errorf("%s: %w", crl, err)
	}
	return v, nil
}

// WithCRL returns a copy of v that checks certificates against crl (PEM or
// DER), which must be issued by v's CA. With acceptStale, a CRL past its
// nextUpdate still refuses the certificates it lists, but no longer refuses
// every message.
func (v *Verifier) WithCRL(crl []byte, acceptStale bool) (*Verifier, error) {
	parsed, err := parseCRL(crl, v.ca)
	if err != nil {
		return nil, err
	}
	c := *v
	c.crl, c.acceptStale = parsed, acceptStale
	c.revoked = make(map[string]bool, len(parsed.RevokedCertificateEntries))
	for _, entry := range parsed.RevokedCertificateEntries {
		c.revoked[entry.SerialNumber.String()] = true
	}
	return &c, nil
}

// CRLNextUpdate returns when the CRL in use expires: zero without a CRL or
// when the CRL names no nextUpdate.
func (v *Verifier) CRLNextUpdate() time.Time {
	if v.crl == nil {
		return time.Time{}
	}
	return v.crl.NextUpdate
}

func parseCRL(data []byte, ca *x509.Certificate) (*x509.RevocationList, error) {
	der := data
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("CRL: PEM block %q, want X509 CRL", block.Type)
		}
		der = block.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parse CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("CRL not issued by the CA: %w", err)
	}
	return crl, nil
}

// Verify checks a signed body received on topic. It applies fedmsg's four
// rules: the certificate was issued by the CA (and is within its validity
// period), it is not in the CRL, the signature matches the canonical JSON of
// the body without signature and certificate, and the routing policy allows
// the certificate's common name on the topic. The policy is checked for the
// body's "topic" field (what Python validators check) and, when it differs,
// for the frame topic too (what subscribers filter on). The error wraps one
// of the package's sentinel errors; see Reason.
func (v *Verifier) Verify(topic string, body []byte) error {
	msg, err := pyjson.Parse(body)
	if err != nil {
		return err
	}
	if msg.Kind != pyjson.KindObject {
		return ErrNotObject
	}
	if backend, ok := msg.Get("crypto"); ok && (backend.Kind != pyjson.KindString || backend.Text != "x509") {
		return fmt.Errorf("%w: crypto backend is not x509", ErrUnsigned)
	}
	sigField, hasSig := msg.Get("signature")
	certField, hasCert := msg.Get("certificate")
	if !hasSig || !hasCert {
		return fmt.Errorf("%w: no signature or certificate field", ErrUnsigned)
	}
	if certField.Kind != pyjson.KindString {
		return fmt.Errorf("%w: certificate field is not a string", ErrMalformedCert)
	}
	if sigField.Kind != pyjson.KindString {
		return fmt.Errorf("%w: signature field is not a string", ErrBadSignature)
	}

	cert, err := decodeCertificate(certField.Text)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedCert, err)
	}
	if err := v.checkCertificate(cert); err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: key is %T, not RSA", ErrMalformedCert, cert.PublicKey)
	}
	signer, ok := commonName(cert)
	if !ok {
		return fmt.Errorf("%w: subject has no common name", ErrMalformedCert)
	}

	sig, err := decodeBase64(sigField.Text)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	stripped := msg.Without("signature", "certificate")
	digest := sha1.Sum(stripped.AppendTo(make([]byte, 0, len(body))))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA1, digest[:], sig); err != nil {
		return fmt.Errorf("%w: signer %q: %w", ErrBadSignature, signer, err)
	}

	bodyTopic := ""
	if t, ok := msg.Get("topic"); ok && t.Kind == pyjson.KindString {
		bodyTopic = t.Text
	}
	if err := v.checkPolicy(bodyTopic, signer); err != nil {
		return err
	}
	if topic != bodyTopic {
		return v.checkPolicy(topic, signer)
	}
	return nil
}

// checkCertificate does what fedmsg's OpenSSL store (the CA alone, plus the
// CRL with CRL_CHECK|CRL_CHECK_ALL) does for a directly issued certificate.
// The CA's signature is checked with CheckSignature, which, like OpenSSL at
// the time, still accepts SHA-1 certificate signatures.
func (v *Verifier) checkCertificate(cert *x509.Certificate) error {
	if !bytes.Equal(cert.RawIssuer, v.ca.RawSubject) {
		return fmt.Errorf("%w: issuer %q", ErrUntrustedCert, cert.Issuer)
	}
	if err := v.ca.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return fmt.Errorf("%w: %w", ErrUntrustedCert, err)
	}
	if len(cert.UnhandledCriticalExtensions) > 0 {
		return fmt.Errorf("%w: unhandled critical extension %v", ErrUntrustedCert, cert.UnhandledCriticalExtensions[0])
	}
	now := v.now()
	if v.crl != nil {
		stale := now.Before(v.crl.ThisUpdate) || !v.crl.NextUpdate.IsZero() && now.After(v.crl.NextUpdate)
		if stale && !v.acceptStale {
			return fmt.Errorf("%w: valid %s to %s", ErrStaleCRL, v.crl.ThisUpdate.Format(time.RFC3339), v.crl.NextUpdate.Format(time.RFC3339))
		}
		if v.revoked[cert.SerialNumber.String()] {
			return fmt.Errorf("%w: serial %s (%q)", ErrRevokedCert, cert.SerialNumber, cert.Subject)
		}
	}
	for _, c := range []*x509.Certificate{cert, v.ca} {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("%w: %q valid %s to %s", ErrExpiredCert, c.Subject,
				c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
		}
	}
	return nil
}

func (v *Verifier) checkPolicy(topic, signer string) error {
	allowed, ok := v.policy[topic]
	switch {
	case ok && !slices.Contains(allowed, signer):
		return fmt.Errorf("%w: topic %q, signer %q", ErrRoutingPolicy, topic, signer)
	case !ok && v.nitpicky:
		return fmt.Errorf("%w: no policy for topic %q (routing_nitpicky)", ErrRoutingPolicy, topic)
	}
	return nil
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// commonName returns the first CN of the subject, as fedmsg's
// get_attributes_for_oid(COMMON_NAME)[0] does (pkix.Name keeps the last).
func commonName(cert *x509.Certificate) (string, bool) {
	for _, attr := range cert.Subject.Names {
		if attr.Type.Equal(oidCommonName) {
			s, ok := attr.Value.(string)
			return s, ok
		}
	}
	return "", false
}

// decodeCertificate undoes the certificate field: base64 of a PEM certificate.
func decodeCertificate(field string) (*x509.Certificate, error) {
	pemBytes, err := decodeBase64(field)
	if err != nil {
		return nil, err
	}
	return parsePEMCertificate(pemBytes)
}

// decodeBase64 decodes like Python's base64.b64decode(s) (validate=False):
// the text must be ASCII, characters outside the base64 alphabet (the line
// breaks) are dropped, and the padding must be right.
func decodeBase64(s string) ([]byte, error) {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80:
			return nil, errors.New("base64 text is not ASCII")
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			clean = append(clean, c)
		}
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(out, clean)
	if err != nil {
		return nil, fmt.Errorf("base64: %w", err)
	}
	return out[:n], nil
}
