package signing

import (
	"errors"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
)

// Sentinel errors returned (wrapped with detail) by Sign and Verify.
// Test them with errors.Is, or map any of them to a metrics label with Reason.
var (
	// The body errors are pyjson's (see there), so errors.Is works with either.
	ErrInvalidJSON     = pyjson.ErrInvalidJSON
	ErrNotReproducible = pyjson.ErrNotReproducible
	ErrNotObject       = pyjson.ErrNotObject

	// ErrUnsigned: no signature or certificate field, or crypto is not "x509".
	ErrUnsigned = errors.New("message is not signed with x509")
	// ErrBadSignature: the signature is not base64 or does not match the body.
	ErrBadSignature = errors.New("bad signature")
	// ErrMalformedCert: the certificate field cannot be decoded into an X.509
	// certificate with an RSA key and a common name.
	ErrMalformedCert = errors.New("malformed certificate")
	// ErrUntrustedCert: the certificate was not issued by the trusted CA.
	ErrUntrustedCert = errors.New("certificate not issued by the trusted CA")
	// ErrRevokedCert: the certificate's serial is in the CRL.
	ErrRevokedCert = errors.New("certificate revoked")
	// ErrExpiredCert: the certificate or the CA is outside its validity period.
	ErrExpiredCert = errors.New("certificate expired or not yet valid")
	// ErrStaleCRL: the CRL is past its nextUpdate (or before its thisUpdate); like
	// OpenSSL, every message is refused until a fresh CRL is loaded, unless
	// the verifier accepts a stale CRL (WithCRL).
	ErrStaleCRL = errors.New("CRL expired or not yet valid")
	// ErrRoutingPolicy: the routing policy does not allow the signer on the topic.
	ErrRoutingPolicy = errors.New("signer not allowed by routing policy")
)

// reasons maps each sentinel to a short label for metrics, in a fixed order.
var reasons = []struct {
	err   error
	label string
}{
	{ErrInvalidJSON, "invalid_json"},
	{ErrNotReproducible, "not_reproducible"},
	{ErrNotObject, "not_object"},
	{ErrUnsigned, "unsigned"},
	{ErrBadSignature, "bad_signature"},
	{ErrMalformedCert, "malformed_cert"},
	{ErrUntrustedCert, "untrusted_cert"},
	{ErrRevokedCert, "revoked_cert"},
	{ErrExpiredCert, "expired_cert"},
	{ErrStaleCRL, "stale_crl"},
	{ErrRoutingPolicy, "routing_policy"},
}

// Reason returns a metrics label for an error from this package: one of
// invalid_json, not_reproducible, not_object, unsigned, bad_signature,
// malformed_cert, untrusted_cert, revoked_cert, expired_cert, stale_crl,
// routing_policy; "other" for anything else (e.g. an RSA failure), "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "other"
}

// Reasons lists every label Reason can return for a non-nil error, so the
// relay can pre-register one counter per label.
func Reasons() []string {
	labels := make([]string, 0, len(reasons)+1)
	for _, r := range reasons {
		labels = append(labels, r.label)
	}
	return append(labels, "other")
}
