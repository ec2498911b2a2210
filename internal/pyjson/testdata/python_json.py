#!/usr/bin/python3
"""Reference side of the pyjson tests: what fedmsg signs, json.dumps of
json.loads (fedmsg.encoding: sort_keys=True, separators=(',', ':')).

One request per input line, one answer per output line:
  base64 body -> "ok <canonical JSON>" | "err <exception>"
allow_nan=False turns what would not be JSON (NaN, Infinity) into an error,
as the Go side refuses it. Bodies are UTF-8, decoded strictly.
"""

import base64
import json
import sys


def canonical(line):
    try:
        obj = json.loads(base64.b64decode(line).decode('utf-8'))
        return 'ok ' + json.dumps(obj, sort_keys=True, separators=(',', ':'), allow_nan=False)
    except Exception as e:  # the kind of failure is enough for the Go side
        return 'err ' + type(e).__name__


if __name__ == '__main__':
    for line in sys.stdin:
        sys.stdout.write(canonical(line.rstrip('\n')) + '\n')
