# Fixture shaped like fedmsg's shipped fedmsg.d/relay.py, with production
# style addresses.
config = dict(
    endpoints={
        # The output side of the relay, where every listener connects.
        "relay_outbound": [
            "tcp://busgateway01.example.org:3999",
        ],
    },

    # The active->passive relay that fedmsg-logger, the git hook and the
    # mediawiki plugin publish to.
    relay_inbound=[
        "tcp://busgateway01.example.org:9941",
        'tcp://busgateway01.vpn.example.org:3998',
    ],
    relay_inbound_confirm="tcp://busgateway01.example.org:9942",
)
