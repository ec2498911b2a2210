"""fedmsg-style peers for the restart tests, as fedmsg.core configures them.

Run with Debian's /usr/bin/python3 (python3-zmq). Modes:

  produce EP ID MS   PUB-connect EP (HWM 0, linger 1 s, reconnect 100..1000 ms)
                     and send [topic, {"producer": ID, "seq": n}] every MS
                     milliseconds until stdin closes; then print "sent N".
  listen EP          SUB-connect EP (subscribe "", reconnect 100..1000 ms) and
                     print "PRODUCER SEQ" per message ("log TEXT" for
                     fedmsg-logger's) until SIGTERM or stdin closes.
  proxy IN OUT       libzmq's zmq_proxy: SUB bound on IN, PUB bound on OUT.
"""

import json
import select
import sys
import time

import zmq

TOPIC = b"org.fedoraproject.prod.restart.test"


def fedmsg_socket(ctx, kind):
    s = ctx.socket(kind)
    # fedmsg.core's settings (zmq_linger, zmq_reconnect_ivl[_max], high_water_mark 0).
    s.setsockopt(zmq.LINGER, 1000)
    s.setsockopt(zmq.RECONNECT_IVL, 100)
    s.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    s.setsockopt(zmq.TCP_KEEPALIVE, 1)
    return s


def produce(ep, ident, ms):
    ctx = zmq.Context()
    pub = fedmsg_socket(ctx, zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.connect(ep)
    print("ready", flush=True)
    seq = 0
    interval = ms / 1000.0
    next_send = time.monotonic()
    while True:
        wait = max(0.0, next_send - time.monotonic())
        r, _, _ = select.select([sys.stdin], [], [], wait)
        if r and not sys.stdin.readline():
            break
        if time.monotonic() < next_send:
            continue
        body = json.dumps({"topic": TOPIC.decode(), "msg": {"producer": ident, "seq": seq}})
        pub.send_multipart([TOPIC, body.encode()])
        seq += 1
        next_send += interval
    print("sent %d" % seq, flush=True)
    pub.close()  # lingers 1 s for what is queued
    ctx.term()


def listen(ep):
    ctx = zmq.Context()
    sub = fedmsg_socket(ctx, zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(ep)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    print("ready", flush=True)
    out = sys.stdout
    while True:
        events = dict(poller.poll())
        if sys.stdin.fileno() in events:
            return
        while True:
            try:
                _, body = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            msg = json.loads(body)["msg"]
            if "producer" in msg:
                out.write("%s %d\n" % (msg["producer"], msg["seq"]))
            else:  # fedmsg-logger --confirm, from the harness
                out.write("log %s\n" % msg.get("log", ""))
        out.flush()


def proxy(inbound, outbound):
    ctx = zmq.Context()
    front = ctx.socket(zmq.SUB)
    front.setsockopt(zmq.SUBSCRIBE, b"")
    front.bind(inbound)
    back = ctx.socket(zmq.PUB)
    back.bind(outbound)
    print("ready", flush=True)
    zmq.proxy(front, back)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "produce":
        produce(args[0], args[1], float(args[2]))
    elif mode == "listen":
        listen(args[0])
    elif mode == "proxy":
        proxy(args[0], args[1])
    else:
        sys.exit("unknown mode " + mode)
