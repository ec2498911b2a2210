# Fixture shaped like fedmsg's shipped fedmsg.d/base.py.
config = dict(
    # dev while hacking; stg or prod inside the infrastructure.
    environment="prod",

    high_water_mark=0,
    io_threads=1,

    ## For the fedmsg-hub and fedmsg-relay. ##
    zmq_enabled=True,
    zmq_strict=False,
    post_init_sleep=0.5,
    zmq_linger=1000,
)
