#!/usr/bin/python3
"""Test only: the logic of Fedora's nagios fedmsg plugins, with pyzmq as they used it.

  check_fedmsg_consumers.py cp SERVICE NAME...                 named consumers/producers present and initialized
  check_fedmsg_consumers.py exceptions SERVICE CONSUMER WARN CRIT
  check_fedmsg_consumers.py backlog SERVICE CONSUMER WARN CRIT

SUB-connects to /run/fedmsg/monitoring-SERVICE.socket, reads one JSON document (up
to 20 s) and exits 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN, as NRPE expects.
"""
import json
import os
import sys

import zmq

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


def status(service):
    fname = "/run/fedmsg/monitoring-%s.socket" % service
    if not os.path.exists(fname):
        raise LookupError("%s does not exist" % fname)
    if not os.access(fname, os.W_OK):
        raise PermissionError("cannot write to %s" % fname)
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect("ipc://" + fname)
    if not s.poll(20000):
        raise TimeoutError("no message received in 20000 ms")
    return json.loads(s.recv())


def threshold(msg, consumer, key, warn, crit):
    for c in msg["consumers"]:
        if c["name"] == consumer:
            value = c[key]
            if value > crit:
                return CRITICAL, "CRITICAL: fedmsg consumer %s %s value is %d" % (consumer, key, value)
            if value > warn:
                return WARNING, "WARNING: fedmsg consumer %s %s value is %d" % (consumer, key, value)
            return OK, "OK: fedmsg consumer %s %s value is %d" % (consumer, key, value)
    return UNKNOWN, "UNKNOWN: fedmsg consumer %s not found" % consumer


def present(msg, names):
    plugins = msg["consumers"] + msg["producers"]
    for p in plugins:
        if p["name"] in names and not p["initialized"]:
            return CRITICAL, "ERROR: fedmsg plugin %s is not initialized" % p["name"]
    for name in names:
        if name not in [p["name"] for p in plugins]:
            return CRITICAL, "ERROR: %s not found among installed plugins" % name
    return OK, "OK: fedmsg consumer(s) and producer(s) initialized"


def main(argv):
    mode, service = argv[1], argv[2]
    msg = status(service)
    if mode == "cp":
        return present(msg, argv[3:])
    return threshold(msg, argv[3], mode, int(argv[4]), int(argv[5]))


if __name__ == "__main__":
    try:
        code, text = main(sys.argv)
    except Exception as err:
        code, text = UNKNOWN, "UNKNOWN: %s" % err
    print(text)
    sys.exit(code)
