"""Real libzmq SUB sockets (pyzmq) driven line by line from stdin, for the
outbound engine's tests. Each command prints one JSON line when done:

  new ID EP HEARTBEAT_MS   a SUB socket (RCVHWM 0) connected to EP, with
                           ZMQ_HEARTBEAT_IVL (and timeout 3x) when > 0
  sub ID HEX / unsub ID HEX  (un)subscribe a prefix, hex-encoded
  recv ID N TIMEOUT_MS     receive until N messages or TIMEOUT_MS without
                           one; prints [[topic hex, body hex], ...]
  close ID
"""

import json
import sys

import zmq

ctx = zmq.Context()
socks = {}
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    op, sid = cmd[0], cmd[1]
    out = "ok"
    if op == "new":
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.LINGER, 0)
        if int(cmd[3]) > 0:
            s.setsockopt(zmq.HEARTBEAT_IVL, int(cmd[3]))
            s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * int(cmd[3]))
        s.connect(cmd[2])
        socks[sid] = s
    elif op == "sub":
        socks[sid].setsockopt(zmq.SUBSCRIBE, bytes.fromhex(cmd[2] if len(cmd) > 2 else ""))
    elif op == "unsub":
        socks[sid].setsockopt(zmq.UNSUBSCRIBE, bytes.fromhex(cmd[2] if len(cmd) > 2 else ""))
    elif op == "recv":
        s, want, timeout = socks[sid], int(cmd[2]), int(cmd[3])
        got = []
        while len(got) < want and s.poll(timeout):
            got.append([f.hex() for f in s.recv_multipart()])
        out = got
    elif op == "close":
        socks.pop(sid).close()
    print(json.dumps(out), flush=True)
