# Shaped like roles/fedmsg/base/templates/ssl.py.j2: the host's own certs
# from its hostname, then the static ones.
import os
import socket

SEP = os.path.sep
here = os.getcwd()
fqdn = socket.gethostname()
shorthost = fqdn.split('.', 1)[0]

config = dict(
    sign_messages=True,
    validate_signatures=True,
    crypto_backend="x509",
    ssldir="/etc/pki/fedmsg",

    crl_location="https://fedoraproject.org/fedmsg/crl.pem",
    crl_cache="/var/run/fedmsg/crl.pem",
    crl_cache_expiry=86400,

    ca_cert_location="https://fedoraproject.org/fedmsg/ca.crt",
    ca_cert_cache="/var/run/fedmsg/ca.crt",
    ca_cert_cache_expiry=0,

    certnames=dict([
        ("shell.%s" % shorthost, "shell-%s" % fqdn),
        ("scm.%s" % shorthost, "scm-%s" % fqdn),
    ] + [
        ("bodhi.bodhi-backend01", "bodhi-bodhi-backend01.iad2.example.org"),
        ("scm.pkgs01", "scm-pkgs01.iad2.example.org"),
        ("shell.busgateway01", "shell-busgateway01.iad2.example.org"),
    ]),
)
