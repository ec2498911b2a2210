# Shaped like roles/fedmsg/base/templates/endpoints.py.j2: module variables,
# %-formatting, .format and a comprehension per host.
import socket

hostname = socket.gethostname().split('.', 1)[0]
suffix = 'iad2.example.org'
ports = range(3000, 3004)

config = dict(
    topic_prefix="org.fedoraproject",
    endpoints={
        "bodhi.bodhi-backend01": [
            "tcp://bodhi-backend01.%s:%i" % (suffix, port) for port in ports
        ],
        "fedora-infrastructure": [
            "tcp://hub.fedoraproject.org:9940",
        ],
        "datanommer.{host}".format(host=hostname): [
            "tcp://{0}.{1}:3010".format(hostname, suffix),
        ],
    },
)
