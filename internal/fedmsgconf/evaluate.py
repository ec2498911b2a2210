# Evaluates fedmsg config files the way fedmsg.config._process_config_file
# does: each file is exec'd in a fresh namespace, its `config` dict is merged
# into the result with _recursive_update (later files win). python.go runs
# this with the value budget and the files as arguments and reads one JSON
# document from fd 3: {"config": {...}} or {"error": {file, line, message}}.
# stdout and stderr stay the config code's, so its prints cannot corrupt it.
import json
import math
import os
import sys

out = os.fdopen(3, "w")
max_values = int(sys.argv[1])
files = sys.argv[2:]


class TooLarge(Exception):
    pass


def finish(doc):
    json.dump(doc, out)
    out.flush()
    # Threads or atexit hooks a config started must not delay the exit.
    os._exit(0)


def fail(fname, line, message):
    finish({"error": {"file": fname, "line": line, "message": message}})


def fail_exception(fname, exc):
    """Reports exc at the innermost line of fname that raised it."""
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == fname:
            line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename == fname:
        line, message = exc.lineno or 0, exc.msg
    else:
        try:
            message = str(exc)
        except Exception:
            message = ""
    name = type(exc).__name__
    fail(fname, line, name + ": " + message if message else name)


def config_line(source):
    """The line of the last module-level assignment to `config`, or 0."""
    import ast  # only on this error path: it costs the startup of every run

    line = 0
    pending = list(ast.parse(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Name) and node.id == "config" and isinstance(node.ctx, ast.Store):
            line = max(line, node.lineno)
        pending.extend(ast.iter_child_nodes(node))
    return line


def tree_size(value, seen):
    """Counts value as the tree a merge or a JSON copy walks, visiting each
    shared dict or list once, so that sub-dicts shared by many keys cannot
    make the count (or the merge after it) exponential."""
    if not isinstance(value, (dict, list, tuple)):
        return 1
    key = id(value)
    if key in seen:
        return seen[key]
    seen[key] = 1  # a cycle counts once; plain() cuts it
    n = 1
    for item in value.values() if isinstance(value, dict) else value:
        n += tree_size(item, seen)
        if n > max_values:
            raise TooLarge()
    seen[key] = n
    return n


def recursive_update(d1, d2):
    """fedmsg.config._recursive_update."""
    for k in set(d1).intersection(d2):
        if isinstance(d1[k], dict) and isinstance(d2[k], dict):
            d1[k] = recursive_update(d1[k], d2[k])
        else:
            d1[k] = d2[k]
    for k in set(d2).difference(d1):
        d1[k] = d2[k]
    return d1


class Plain:
    """Reduces a value to JSON data: values JSON cannot carry (classes,
    functions, loggers, sets, bytes, huge ints, non-finite floats) become
    their repr, a cycle becomes "{...}" or "[...]"."""

    def __init__(self):
        self.left = max_values
        self.active = set()

    def __call__(self, v):
        self.left -= 1
        if self.left < 0:
            raise TooLarge()
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return int(v) if -2**63 <= v < 2**63 else repr(v)
        if isinstance(v, float):
            return float(v) if math.isfinite(v) else repr(v)
        if isinstance(v, (dict, list, tuple)):
            if id(v) in self.active:
                return "{...}" if isinstance(v, dict) else "[...]"
            self.active.add(id(v))
            if isinstance(v, dict):
                r = {(k if isinstance(k, str) else safe_repr(k)): self(x) for k, x in v.items()}
            else:
                r = [self(x) for x in v]
            self.active.discard(id(v))
            return r
        return safe_repr(v)


def safe_repr(v):
    try:
        return repr(v)
    except Exception:
        return "<%s>" % type(v).__name__


def main():
    try:
        # A config that allocates without bound gets a MemoryError, not the
        # host's OOM killer.
        import resource
        limit = 1 << 30
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass

    merged = {}
    for fname in files:
        variables = {}
        try:
            with open(fname, "rb") as f:
                source = f.read()
            exec(compile(source, fname, "exec"), variables)
        except BaseException as exc:
            fail_exception(fname, exc)
        if "config" not in variables:
            fail(fname, 0, "no `config` defined")
        cfg = variables["config"]
        if not isinstance(cfg, dict):
            fail(fname, config_line(source), "`config` is a %s, not a dict" % type(cfg).__name__)
        try:
            tree_size(cfg, {})
            merged = recursive_update(merged, cfg)
        except TooLarge:
            fail(fname, 0, "`config` holds more than %d values" % max_values)
        except RecursionError:
            fail(fname, 0, "`config` is nested too deeply to merge")
    try:
        doc = {"config": Plain()(merged)}
    except TooLarge:
        fail("", 0, "the merged config holds more than %d values" % max_values)
    except RecursionError:
        fail("", 0, "the merged config is nested too deeply")
    finish(doc)


main()
