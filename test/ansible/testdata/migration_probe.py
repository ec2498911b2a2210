"""Producer and listeners for the relay migration test (run with /usr/bin/python3).

Usage: migration_probe.py RELAY_PY OLD_OUTBOUND NEW_OUTBOUND STOP_FILE

Sends one message every 100 ms to relay_inbound of RELAY_PY (a host's
/etc/fedmsg.d/relay.py), re-reading the file before every message as a long-running
producer that follows its configuration would, and reconnecting when it changes. Two
listeners count what arrives:
  - "any": one SUB socket connected to both relays' outbound endpoints, so it measures
    what the producer side loses;
  - "follower": a SUB socket that follows endpoints["relay_outbound"] of RELAY_PY like the
    producer, so it measures what a client repointed by the same change sees end to end.
Prints "ready" once sending, and a JSON report after STOP_FILE appears (plus 2 s for
stragglers).
"""
import json
import os
import runpy
import sys
import time
import uuid

import zmq

INTERVAL = 0.1
TOPIC = "org.fedoraproject.dev.ansible.migration"


def endpoints(path):
    config = runpy.run_path(path)["config"]
    return config["relay_inbound"][0], config["endpoints"]["relay_outbound"][0]


def main():
    relay_py, old_out, new_out, stop_file = sys.argv[1:5]
    ctx = zmq.Context()
    any_sub = ctx.socket(zmq.SUB)
    any_sub.setsockopt(zmq.SUBSCRIBE, b"")
    any_sub.connect(old_out)
    any_sub.connect(new_out)

    inbound, outbound = endpoints(relay_py)
    follower = ctx.socket(zmq.SUB)
    follower.setsockopt(zmq.SUBSCRIBE, b"")
    follower.connect(outbound)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 1000)
    pub.connect(inbound)
    time.sleep(1.0)  # let the subscriptions reach the relay before the first message

    poller = zmq.Poller()
    poller.register(any_sub, zmq.POLLIN)
    poller.register(follower, zmq.POLLIN)
    got = {"any": set(), "follower": set()}
    switches = []
    seq = 0
    print("ready", flush=True)

    def drain(until):
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            for sock, _ in poller.poll(left * 1000):
                _, body = sock.recv_multipart()
                got["any" if sock is any_sub else "follower"].add(json.loads(body)["msg"]["seq"])

    next_send = time.monotonic()
    stop_at = None
    while stop_at is None or time.monotonic() < stop_at:
        if stop_at is None and os.path.exists(stop_file):
            stop_at = time.monotonic() + 2.0
        if stop_at is None:
            new_inbound, new_outbound = endpoints(relay_py)
            if new_inbound != inbound:
                pub.close()
                pub = ctx.socket(zmq.PUB)
                pub.setsockopt(zmq.LINGER, 1000)
                pub.connect(new_inbound)
                switches.append({"seq": seq + 1, "producer": new_inbound})
                inbound = new_inbound
            if new_outbound != outbound:
                follower.disconnect(outbound)
                follower.connect(new_outbound)
                switches.append({"seq": seq + 1, "listener": new_outbound})
                outbound = new_outbound
            seq += 1
            body = {"topic": TOPIC, "msg": {"seq": seq}, "timestamp": int(time.time()),
                    "msg_id": "%d-%s" % (time.gmtime().tm_year, uuid.uuid4()), "i": seq,
                    "username": "migration-probe"}
            pub.send_multipart([TOPIC.encode(), json.dumps(body).encode()])
        next_send += INTERVAL
        drain(min(next_send, stop_at) if stop_at else next_send)

    sent = set(range(1, seq + 1))
    print(json.dumps({
        "sent": seq,
        "received_any": len(got["any"] & sent),
        "received_follower": len(got["follower"] & sent),
        "lost_any": sorted(sent - got["any"]),
        "lost_follower": sorted(sent - got["follower"]),
        "switches": switches,
    }), flush=True)


if __name__ == "__main__":
    main()
