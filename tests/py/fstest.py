"""Shared helpers for the Python end-to-end tests: the result-line format of
tests/run ("ok NAME", "FAIL NAME: why", "skip NAME: why"), scratch folders,
and running the stages."""
import json
import os
import shutil
import struct
import subprocess
import sys
import traceback

BIN = os.environ.get("BIN", "build/bin")
SHARED = os.environ.get("FEWSAM_SHARED", "../shared")
TMP = os.environ.get("FEWSAM_TEST_TMP", "build/tmp")
failures = 0


def read_safetensors(path):
    """(metadata, {name: (dtype, shape, raw bytes)}) of a safetensors file."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    data = b[8 + n:]
    return meta, {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()}


def scratch(name):
    d = os.path.join(TMP, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def run(stage, *args, check=True):
    """Runs build/bin/<stage> with args; returns (returncode, stdout, stderr)."""
    p = subprocess.run([os.path.join(BIN, stage)] + [str(a) for a in args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{stage} exited {p.returncode}: {p.stderr.strip()}")
    return p.returncode, p.stdout, p.stderr


def error_lines(stderr):
    return [l for l in stderr.splitlines() if "error" in l or "Try '" in l or "usage" in l.lower()]


class Skip(Exception):
    """Raised inside a test: it reports itself skipped, with the reason."""


def shared(*parts):
    """The path of a file or folder of the shared data; a test that needs a
    missing one is skipped (raises Skip), not failed."""
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        raise Skip(f"{p} missing (the shared data: set FEWSAM_SHARED)")
    return p


def need_shared(*parts):
    """shared() for a whole file: prints its skip line and exits 0."""
    try:
        return shared(*parts)
    except Skip as e:
        print(f"skip {os.path.basename(sys.argv[0])}: {e}")
        sys.exit(0)


def test(fn):
    """Decorator: runs fn now and prints its result line."""
    global failures
    try:
        r = fn()
        if isinstance(r, str) and r.startswith("skip:"):
            print(f"skip {fn.__name__}: {r[5:].strip()}")
        else:
            print(f"ok {fn.__name__}")
    except Skip as e:
        print(f"skip {fn.__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - every failure becomes a FAIL line
        failures += 1
        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"FAIL {fn.__name__}: line {where.lineno}: {type(e).__name__}: {e}".replace("\n", " "))
    sys.stdout.flush()
    return fn


def need(*modules):
    """Imports modules or prints skip lines for the whole file and exits 0."""
    try:
        return [__import__(m) for m in modules]
    except ImportError as e:
        print(f"skip {os.path.basename(sys.argv[0])}: {e}")
        sys.exit(0)


def finish():
    sys.exit(1 if failures else 0)
