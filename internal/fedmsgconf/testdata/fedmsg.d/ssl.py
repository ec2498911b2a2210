# Fixture shaped like fedmsg's shipped fedmsg.d/ssl.py: it imports os, which
# is outside the literal subset, so the whole file is skipped with a warning.
import os
import socket

SEP = os.path.sep
here = os.getcwd()
hostname = socket.gethostname()

config = dict(
    sign_messages=False,
    validate_signatures=False,
    ssldir="/etc/pki/fedmsg",

    crl_location="https://fedoraproject.org/fedmsg/crl.pem",
    crl_cache="/tmp/crl.pem",
    crl_cache_expiry=10,

    certnames={
        #"app01.stg": "app01.stg.phx2.fedoraproject.org",
    },
)
