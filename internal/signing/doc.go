// Package signing implements fedmsg's X.509 message signing scheme
// (fedmsg.crypto.x509 / x509_ng): signing with an RSA key pair from
// <ssldir>/<certname>.{key,crt}, and validation against a CA, a CRL (kept
// fresh by CRLRefresher) and a routing policy. What is signed is the
// Python-exact canonical JSON of package pyjson.
package signing
