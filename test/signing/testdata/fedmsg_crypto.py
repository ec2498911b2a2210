#!/usr/bin/python3
"""The Python side of the signing relay's end-to-end tests.

Written from fedmsg's X.509 scheme (fedmsg.crypto.x509_ng) with Debian's
python3-cryptography, and real libzmq peers with python3-zmq. Canonical bytes
are Python's own json.dumps(sort_keys=True, separators=(',', ':')).

  verify CA     one JSON request per line {"got": b64 body, "sent": b64 body
                or null}; one JSON answer per line {"error": "" or a reason,
                "cn": signer's common name, "crypto": the crypto field,
                "unchanged": whether got minus crypto/signature/certificate
                equals sent (null without sent)}
  validate CA CRL POLICY NITPICKY
                fedmsg.crypto.x509_ng.validate itself: the CA chain and the CRL
                through pyOpenSSL's X509Store (CRL_CHECK|CRL_CHECK_ALL), the
                signature, then utils.validate_policy with POLICY (a JSON file
                of routing_policy) and NITPICKY ("true"/"false"). One JSON
                request per line {"got": b64 body}; one answer per line
                {"error": "" or a reason, "cn": the signer's common name}
  sign SSLDIR   one JSON request per line {"certname", "body": b64}; one line
                per request: base64 of the body signed as fedmsg.publish does
  exchange      JSON on stdin {"inbound", "outbound", "subscribers", "ssldir",
                "certname", "messages": [[b64 topic, b64 body], ...]}:
                SUB-connects the relay's outbound, PUB-connects (XPUB) its
                inbound, sends probes signed with certname until every path is
                live, then the messages and a signed sentinel; prints
                {"received": [[[b64 topic, b64 body], ...] per subscriber]},
                what each got before the sentinel, in order.
"""

import base64
import json
import sys
import time
import uuid

import zmq
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from OpenSSL import crypto as ossl

ADDED = ('crypto', 'signature', 'certificate')
PROBE_TOPIC = b'org.fedoraproject.test.signing.probe'


def dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(',', ':'))


def split76(b64):
    return '\n'.join(b64[i:i + 76] for i in range(0, len(b64), 76)) + '\n'


def check(ca, got):
    """Returns (error, cn) for a received body."""
    message = json.loads(got.decode('utf-8'))
    fields = {k: message.get(k) for k in ('signature', 'certificate')}
    if not all(isinstance(v, str) for v in fields.values()):
        return 'unsigned', None
    # M2Crypto's layout, which fedmsg kept: 76-character lines, final newline.
    for name, value in fields.items():
        if split76(value.replace('\n', '')) != value:
            return name + '_layout', None
    cert = x509.load_pem_x509_certificate(base64.b64decode(fields['certificate']))
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    if cert.issuer != ca.subject:
        return 'untrusted_cert', cn
    try:
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                               padding.PKCS1v15(), cert.signature_hash_algorithm)
    except InvalidSignature:
        return 'untrusted_cert', cn
    stripped = {k: v for k, v in message.items() if k not in ('signature', 'certificate')}
    try:
        cert.public_key().verify(base64.b64decode(fields['signature']),
                                 dumps(stripped).encode('utf-8'),
                                 padding.PKCS1v15(), hashes.SHA1())
    except InvalidSignature:
        return 'bad_signature', cn
    return '', cn


def verify(ca_path):
    with open(ca_path, 'rb') as f:
        ca = x509.load_pem_x509_certificate(f.read())
    for line in sys.stdin:
        request = json.loads(line)
        got = base64.b64decode(request['got'])
        try:
            error, cn = check(ca, got)
        except Exception as e:  # malformed: the kind is enough
            error, cn = 'exception ' + type(e).__name__, None
        answer = {'error': error, 'cn': cn, 'crypto': None, 'unchanged': None}
        message = json.loads(got.decode('utf-8'))
        answer['crypto'] = message.get('crypto')
        if request.get('sent') is not None:
            sent = json.loads(base64.b64decode(request['sent']).decode('utf-8'))
            answer['unchanged'] = sent == {k: v for k, v in message.items() if k not in ADDED}
        print(json.dumps(answer), flush=True)


def fedmsg_validate(ca_pem, crl_pem, policy, nitpicky, got):
    """Returns (error, cn) as fedmsg's x509_ng.validate decides."""
    message = json.loads(got.decode('utf-8'))
    if message.get('crypto', 'x509') != 'x509':
        return 'crypto_backend', None
    for field in ('signature', 'certificate'):
        if not isinstance(message.get(field), str):
            return 'unsigned', None
    signature = base64.b64decode(message['signature'])
    certificate = base64.b64decode(message['certificate'])
    stripped = {k: v for k, v in message.items() if k not in ('signature', 'certificate')}
    store = ossl.X509Store()
    store.add_cert(ossl.load_certificate(ossl.FILETYPE_PEM, ca_pem))
    store.add_crl(ossl.load_crl(ossl.FILETYPE_PEM, crl_pem))
    store.set_flags(ossl.X509StoreFlags.CRL_CHECK | ossl.X509StoreFlags.CRL_CHECK_ALL)
    try:
        ossl.X509StoreContext(store, ossl.load_certificate(ossl.FILETYPE_PEM, certificate)).verify_certificate()
    except ossl.X509StoreContextError as e:
        return 'certificate: ' + str(e), None
    cert = x509.load_pem_x509_certificate(certificate)
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    try:
        cert.public_key().verify(signature, dumps(stripped).encode('utf-8'),
                                 padding.PKCS1v15(), hashes.SHA1())
    except InvalidSignature:
        return 'bad_signature', cn
    topic = message.get('topic')
    if topic in policy:
        return ('' if cn in policy[topic] else 'routing_policy'), cn
    return ('routing_policy' if nitpicky else ''), cn


def validate(ca_path, crl_path, policy_path, nitpicky):
    with open(ca_path, 'rb') as f:
        ca_pem = f.read()
    with open(crl_path, 'rb') as f:
        crl_pem = f.read()
    with open(policy_path) as f:
        policy = json.load(f)
    for line in sys.stdin:
        got = base64.b64decode(json.loads(line)['got'])
        error, cn = fedmsg_validate(ca_pem, crl_pem, policy, nitpicky == 'true', got)
        print(json.dumps({'error': error, 'cn': cn}), flush=True)


def make_signer(ssldir):
    keys = {}

    def sign(certname, body):
        if certname not in keys:
            with open('%s/%s.key' % (ssldir, certname), 'rb') as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
            with open('%s/%s.crt' % (ssldir, certname), 'rb') as f:
                cert = f.read()
            keys[certname] = key, split76(base64.b64encode(cert).decode('ascii'))
        key, certificate = keys[certname]
        message = json.loads(body.decode('utf-8'))
        message['crypto'] = 'x509'
        signature = key.sign(dumps(message).encode('utf-8'), padding.PKCS1v15(), hashes.SHA1())
        message['signature'] = split76(base64.b64encode(signature).decode('ascii'))
        message['certificate'] = certificate
        return dumps(message).encode('utf-8')
    return sign


def sign(ssldir):
    signer = make_signer(ssldir)
    for line in sys.stdin:
        request = json.loads(line)
        body = signer(request['certname'], base64.b64decode(request['body']))
        print(base64.b64encode(body).decode('ascii'), flush=True)


def exchange():
    spec = json.load(sys.stdin)
    signer = make_signer(spec['ssldir'])

    def marker(kind):
        tag = str(uuid.uuid4())
        body = json.dumps({'topic': PROBE_TOPIC.decode(), 'msg': {kind: tag}})
        return [PROBE_TOPIC, signer(spec['certname'], body.encode())], tag

    def is_marker(frames, kind, tag):
        # By content, not bytes: a signing relay re-signs what it relays.
        return frames[0] == PROBE_TOPIC and json.loads(frames[1])['msg'].get(kind) == tag

    ctx = zmq.Context()
    subs = []
    for _ in range(spec['subscribers']):
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b'')
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.connect(spec['outbound'])
        subs.append(sub)
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 5000)
    pub.connect(spec['inbound'])
    pub.recv()  # the relay's subscription: our connection is live

    # The relay's outbound reaches a subscriber once a probe does (no fixed
    # sleeps); then drop whatever probes are still on their way.
    probe, tag = marker('probe')
    deadline = time.monotonic() + 10
    for sub in subs:
        while not sub.poll(20):
            if time.monotonic() > deadline:
                sys.exit('no probe came through the relay')
            pub.send_multipart(probe)
    for sub in subs:
        while sub.poll(100):
            sub.recv_multipart()

    # One connection keeps order: the sentinel comes after every message.
    sentinel, tag = marker('sentinel')
    for topic, body in spec['messages']:
        pub.send_multipart([base64.b64decode(topic), base64.b64decode(body)])
    pub.send_multipart(sentinel)
    received = []
    for sub in subs:
        got = []
        while True:
            if not sub.poll(30000):
                sys.exit('the sentinel never came through the relay')
            frames = sub.recv_multipart()
            if is_marker(frames, 'sentinel', tag):
                break
            if frames[0] != PROBE_TOPIC:
                got.append([base64.b64encode(f).decode('ascii') for f in frames])
        received.append(got)
    json.dump({'received': received}, sys.stdout)
    pub.close()
    for sub in subs:
        sub.close(linger=0)
    ctx.term()


def main(argv):
    mode = argv[1]
    if mode == 'verify':
        verify(argv[2])
    elif mode == 'validate':
        validate(*argv[2:6])
    elif mode == 'sign':
        sign(argv[2])
    elif mode == 'exchange':
        exchange()
    else:
        sys.exit('unknown mode %r' % mode)


if __name__ == '__main__':
    main(sys.argv)
