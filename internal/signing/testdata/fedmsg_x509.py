#!/usr/bin/python3
"""Reference side of the Go signing tests: fedmsg's X.509 scheme in Python.

Written from fedmsg.crypto.x509_ng (sign, _prep_crypto_msg, validate,
_validate_signing_cert), fedmsg.crypto.utils.validate_policy and
fedmsg.encoding (json.dumps with sort_keys=True, separators=(',', ':')), with
Debian's python3-cryptography and python3-openssl. One process handles a whole
batch: one request per input line, one answer per output line.

  sign SSLDIR               JSON {"certname", "style", "body": base64}
                            -> base64 of the published body | "err ..."
                            style publish: fedmsg.publish (sorted, compact);
                            style moksha: the signing relay (moksha's json.dumps)
  verify CA CRL POLICY NITPICKY
                            JSON {"body": base64} -> "ok" | "fail <reason>"
                            CRL "" for none, POLICY a JSON object, NITPICKY 0/1
"""

import base64
import json
import sys

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from OpenSSL import crypto as ossl


def dumps(obj):
    # fedmsg.encoding.dumps; allow_nan=False turns what would not be JSON
    # (NaN, Infinity) into an error, as the Go side refuses it.
    return json.dumps(obj, sort_keys=True, separators=(',', ':'), allow_nan=False)


def loads(raw):
    # Bodies on the wire are UTF-8; decode strictly (no surrogatepass).
    return json.loads(raw.decode('utf-8'))


def split76(b64):
    return '\n'.join(b64[i:i + 76] for i in range(0, len(b64), 76)) + '\n'


def make_signer(ssldir):
    keys = {}

    def load(certname):
        if certname not in keys:
            with open('%s/%s.key' % (ssldir, certname), 'rb') as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
            with open('%s/%s.crt' % (ssldir, certname), 'rb') as f:
                cert_pem = x509.load_pem_x509_certificate(f.read()).public_bytes(
                    serialization.Encoding.PEM)
            keys[certname] = key, split76(base64.b64encode(cert_pem).decode('ascii'))
        return keys[certname]

    def sign(line):
        try:
            request = json.loads(line)
            key, certificate = load(request['certname'])
            message = loads(base64.b64decode(request['body']))
            message['crypto'] = 'x509'
            signature = key.sign(dumps(message).encode('utf-8'),
                                 padding.PKCS1v15(), hashes.SHA1())
            signed = dict(list(message.items()) + [
                ('signature', split76(base64.b64encode(signature).decode('ascii'))),
                ('certificate', certificate),
            ])
            out = dumps(signed) if request['style'] == 'publish' else json.dumps(signed)
            return base64.b64encode(out.encode('utf-8')).decode('ascii')
        except Exception as e:
            return 'err ' + type(e).__name__
    return sign


# OpenSSL verification error codes (include/openssl/x509_vfy.h).
X509_V_ERR = {
    9: 'expired_cert',    # CERT_NOT_YET_VALID
    10: 'expired_cert',   # CERT_HAS_EXPIRED
    11: 'stale_crl',      # CRL_NOT_YET_VALID
    12: 'stale_crl',      # CRL_HAS_EXPIRED
    23: 'revoked_cert',   # CERT_REVOKED
}


def make_verifier(ca_path, crl_path, policy, nitpicky):
    with open(ca_path, 'rb') as f:
        ca = ossl.load_certificate(ossl.FILETYPE_PEM, f.read())
    crl = None
    if crl_path:
        with open(crl_path, 'rb') as f:
            crl = ossl.load_crl(ossl.FILETYPE_PEM, f.read())

    def validate(message):
        for field in ('signature', 'certificate'):
            if not isinstance(message.get(field), str):
                return 'unsigned'
        signature = base64.b64decode(message['signature'])
        certificate = base64.b64decode(message['certificate'])
        message = {k: v for k, v in message.items()
                   if k not in ('signature', 'certificate')}

        store = ossl.X509Store()
        store.add_cert(ca)
        if crl is not None:
            store.add_crl(crl)
            store.set_flags(ossl.X509StoreFlags.CRL_CHECK | ossl.X509StoreFlags.CRL_CHECK_ALL)
        try:
            ossl.X509StoreContext(
                store, ossl.load_certificate(ossl.FILETYPE_PEM, certificate)).verify_certificate()
        except ossl.X509StoreContextError as e:
            return X509_V_ERR.get(e.errors[0], 'untrusted_cert')

        cert = x509.load_pem_x509_certificate(certificate)
        try:
            cert.public_key().verify(signature, dumps(message).encode('utf-8'),
                                     padding.PKCS1v15(), hashes.SHA1())
        except InvalidSignature:
            return 'bad_signature'

        signer = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
        topic = message.get('topic')
        if topic in policy:
            return None if signer in policy[topic] else 'routing_policy'
        return 'routing_policy' if nitpicky else None

    def verify(line):
        try:
            reason = validate(loads(base64.b64decode(json.loads(line)['body'])))
        except Exception as e:
            reason = 'exception ' + type(e).__name__
        return 'ok' if reason is None else 'fail ' + reason
    return verify


def main(argv):
    mode = argv[1]
    if mode == 'sign':
        handle = make_signer(argv[2])
    elif mode == 'verify':
        handle = make_verifier(argv[2], argv[3], json.loads(argv[4]), argv[5] == '1')
    else:
        sys.exit('unknown mode %r' % mode)
    out = sys.stdout
    for line in sys.stdin:
        out.write(handle(line.rstrip('\n')) + '\n')


if __name__ == '__main__':
    main(sys.argv)
