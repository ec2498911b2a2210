"""Real libzmq peers (pyzmq) for the relay's tests and benchmarks.

Run with Debian's /usr/bin/python3 (python3-zmq). Modes:

  scenario            JSON on stdin: {"inbound": EP, "outbound": EP,
                      "subscribers": N, "producers": [[[b64 frame, ...], ...], ...],
                      "idle": seconds, "expect": N}. Collection ends when
                      every SUB has N messages, or after idle seconds of silence. Connects N SUB sockets to the relay's
                      outbound and one PUB per producer to its inbound, sends
                      probes until every path is live (no fixed sleeps), then
                      sends each producer's messages (interleaved round-robin)
                      and prints {"received": [[[b64 frame, ...], ...] per SUB]}.
  proxy IN OUT HWM    libzmq's own zmq.proxy(SUB bind IN, PUB bind OUT): the
                      benchmark baseline.
  flood EP N SIZE     PUB-connect EP, wait for the peer's subscription (XPUB),
                      send N fedmsg messages with SIZE-byte bodies, linger.
  count EP N IDLE     SUB-connect EP, print "ready", count messages until N
                      arrived or IDLE seconds pass without one; print JSON
                      {"n", "first", "last"} (monotonic seconds).
  churn EP N          N cycles of connect PUB, send one message, close.
"""

import base64
import json
import sys
import time

import zmq

PROBE_TOPIC = b"org.fedoraproject.test.probe"


def fedmsg(topic, i, size):
    body = {"topic": topic.decode(), "i": i, "timestamp": 1700000000,
            "msg_id": "2026-00000000-0000-4000-8000-%012d" % i, "username": "bench",
            "msg": {"pad": ""}}
    raw = json.dumps(body).encode()
    body["msg"]["pad"] = "x" * max(0, size - len(raw))
    return json.dumps(body).encode()


def probe(producer):
    body = json.dumps({"topic": PROBE_TOPIC.decode(), "msg": {"producer": producer}}).encode()
    return [PROBE_TOPIC, body]


def scenario():
    spec = json.load(sys.stdin)
    ctx = zmq.Context()
    subs = []
    for _ in range(spec["subscribers"]):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.IPV6, 1)  # lets tcp://[::1]:N work; IPv4 unaffected
        s.connect(spec["outbound"])
        subs.append(s)
    pubs = []
    for _ in spec["producers"]:
        p = ctx.socket(zmq.PUB)
        p.setsockopt(zmq.SNDHWM, 0)
        p.setsockopt(zmq.LINGER, 5000)
        p.setsockopt(zmq.IPV6, 1)
        p.connect(spec["inbound"])
        pubs.append(p)
    poller = zmq.Poller()
    for s in subs:
        poller.register(s, zmq.POLLIN)
    # Probe each producer -> relay -> every subscriber path until it is live.
    deadline = time.monotonic() + 10
    for k, p in enumerate(pubs):
        seen = set()
        while len(seen) < len(subs):
            if time.monotonic() > deadline:
                sys.exit("paths never became live")
            p.send_multipart(probe(k))
            for sock, _ in poller.poll(20):
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if frames[0] == PROBE_TOPIC and json.loads(frames[1])["msg"]["producer"] == k:
                        seen.add(subs.index(sock))
    # Let stray probes arrive and discard them.
    while poller.poll(100):
        for s in subs:
            try:
                while True:
                    s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                pass
    queues = [[[base64.b64decode(f) for f in m] for m in msgs] for msgs in spec["producers"]]
    while any(queues):
        for p, q in zip(pubs, queues):
            if q:
                p.send_multipart(q.pop(0))
    received = [[] for _ in subs]
    idle = spec.get("idle", 1.0)
    expect = spec.get("expect", 0)
    while not expect or min(len(r) for r in received) < expect:
        events = poller.poll(int(idle * 1000))
        if not events:
            break
        for sock, _ in events:
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if frames[0] != PROBE_TOPIC:
                    received[subs.index(sock)].append([base64.b64encode(f).decode() for f in frames])
    json.dump({"received": received}, sys.stdout)
    for p in pubs:
        p.close()
    for s in subs:
        s.close(linger=0)
    ctx.term()


def proxy(inbound, outbound, hwm):
    ctx = zmq.Context()
    front = ctx.socket(zmq.SUB)
    front.setsockopt(zmq.RCVHWM, hwm)
    front.setsockopt(zmq.SUBSCRIBE, b"")
    front.bind(inbound)
    back = ctx.socket(zmq.PUB)
    back.setsockopt(zmq.SNDHWM, hwm)
    back.bind(outbound)
    print("ready", flush=True)
    zmq.proxy(front, back)


def flood(endpoint, n, size):
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 60000)
    pub.connect(endpoint)
    pub.recv()  # the relay's subscription: the connection is live
    topic = b"org.fedoraproject.prod.bench.flood"
    body = fedmsg(topic, 1, size)
    for _ in range(n):
        pub.send(topic, zmq.SNDMORE)
        pub.send(body)
    pub.close()
    ctx.term()


def count(endpoint, n, idle):
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    print("ready", flush=True)
    got, first, last = 0, None, None
    sub.RCVTIMEO = int(idle * 1000)
    while got < n:
        try:
            sub.recv_multipart()
        except zmq.Again:
            if first is not None:
                break
            continue
        last = time.monotonic()
        if first is None:
            first = last
        got += 1
    print(json.dumps({"n": got, "first": first, "last": last}), flush=True)


def churn(endpoint, n):
    topic = b"org.fedoraproject.prod.bench.churn"
    body = fedmsg(topic, 1, 200)
    ctx = zmq.Context()
    for i in range(n):
        if i % 200 == 199:
            # libzmq reaps closed sockets asynchronously: a fresh context
            # keeps us under its 1023-socket limit.
            ctx.term()
            ctx = zmq.Context()
        p = ctx.socket(zmq.PUB)
        p.setsockopt(zmq.LINGER, 0)
        p.connect(endpoint)
        p.send_multipart([topic, body])
        p.close()
    ctx.term()


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "scenario":
        scenario()
    elif mode == "proxy":
        proxy(args[0], args[1], int(args[2]))
    elif mode == "flood":
        flood(args[0], int(args[1]), int(args[2]))
    elif mode == "count":
        count(args[0], int(args[1]), float(args[2]))
    elif mode == "churn":
        churn(args[0], int(args[1]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
