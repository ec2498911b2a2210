"""Real libzmq peers for the package tests. Run with Debian's /usr/bin/python3
(python3-zmq). Modes:

  refused EP N PREFIX DELAY_MS
      DEALER-connect EP (the relay's relay_inbound_confirm), send N messages
      with topics PREFIX.000000 ... whose body is not JSON, one at a time, and
      require the reply refused:body_not_json to each (5 s timeout); print N.
      Each one is a drop the relay logs: a line the logrotate test accounts for.
  roundtrip IN OUT TOPIC
      SUB-connect OUT, PUB-connect IN, publish one fedmsg message on TOPIC
      every 100 ms until it comes back (15 s timeout); print the frames
      received as JSON [topic, body] and exit 0, or exit 1.
"""

import json
import sys
import time

import zmq


def refused(endpoint, n, prefix, delay_ms):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(endpoint)
    for i in range(n):
        s.send_multipart([b"%s.%06d" % (prefix.encode(), i), b"not json"])
        try:
            reply = s.recv_multipart()
        except zmq.Again:
            sys.exit("message %d: no reply within 5 s" % i)
        if reply != [b"refused:body_not_json"]:
            sys.exit("message %d: reply %r" % (i, reply))
        time.sleep(delay_ms / 1000.0)
    print(n)


def roundtrip(inbound, outbound, topic):
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(outbound)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(inbound)
    body = json.dumps({"topic": topic, "msg": {"hello": "package test"}, "timestamp": int(time.time()),
                       "msg_id": "2026-4a6f2d0e-8a51-4c2e-9d55-1f4f1e0b7c11", "i": 1,
                       "username": "test"}).encode()
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pub.send_multipart([topic.encode(), body])
        if poller.poll(100):
            frames = sub.recv_multipart()
            if frames[0] == topic.encode():
                print(json.dumps([f.decode() for f in frames]))
                if frames != [topic.encode(), body]:
                    sys.exit("relayed frames differ from the ones sent")
                return
    sys.exit("nothing came back from %s within 15 s" % outbound)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "refused":
        refused(args[0], int(args[1]), args[2], int(args[3]))
    elif mode == "roundtrip":
        roundtrip(*args)
    else:
        sys.exit("unknown mode %s" % mode)
