# Fixture shaped like fedmsg's shipped fedmsg.d/endpoints.py, including its
# hostname idiom.
import socket
hostname = socket.gethostname().split('.', 1)[0]

config = dict(
    endpoints={
        # Listen to the upstream infrastructure's bus from a local box.
        "fedora-infrastructure": [
            "tcp://hub.fedoraproject.org:9940",
            #"tcp://stg.fedoraproject.org:9940",
        ],
        'host-local': ['tcp://127.0.0.1:3000'],
        #"bodhi.%s" % hostname: ["tcp://127.0.0.1:3001"],
    },
    this_host=hostname,
)
