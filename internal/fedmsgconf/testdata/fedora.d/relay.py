# Shaped like roles/fedmsg/base/templates/relay.py.j2.
suffix = 'iad2.example.org'
vpn_suffix = 'vpn.example.org'

config = dict(
    endpoints={
        # This is the output side of the relay to which all other
        # services can listen.
        "relay_outbound": [
            "tcp://busgateway01.%s:3999" % suffix,
        ],
    },

    # This is the address of an active->passive relay.  It is used for the
    # fedmsg-logger command which requires another service with a stable
    # listening address for it to send messages to.
    relay_inbound=[
        "tcp://busgateway01.%s:9941" % suffix,
        # Hosts outside the datacentre come in over the VPN.
        "tcp://busgateway01.{0}:3998".format(vpn_suffix),
    ],
    relay_inbound_confirm="tcp://busgateway01." + suffix + ":9942",
)
