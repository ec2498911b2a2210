# Shaped like roles/fedmsg/base/templates/base.py.j2 as Fedora last used it.
config = dict(
    # Set this to dev if you're hacking on fedmsg or an app locally.
    # Set to stg or prod if running in the Fedora Infrastructure.
    environment="prod",

    # Default is 0
    high_water_mark=0,
    io_threads=1,

    # We almost always want the fedmsg-hub to be sending messages with zmq as
    # opposed to amqp or stomp.
    zmq_enabled=True,

    # When subscribing to messages, we want to allow splats ('*').
    zmq_strict=False,

    # See the following
    #   - http://tldp.org/HOWTO/TCP-Keepalive-HOWTO/overview.html
    #   - http://api.zeromq.org/3-2:zmq-setsockopt
    zmq_tcp_keepalive=1,
    zmq_tcp_keepalive_cnt=3,
    zmq_tcp_keepalive_idle=60,
    zmq_tcp_keepalive_intvl=5,

    # Wait a second before reconnecting, back off up to 100 seconds.
    zmq_reconnect_ivl=1000,
    zmq_reconnect_ivl_max=100000,

    active=True,
    cert_prefix="shell",
    post_init_sleep=0.5,
    zmq_linger=2000,
)
