"""The bodies of the benchmark's jobs, the same for every peer (benchmarks/peers.py).

Each peer's module wraps these in its own task decorator. They read their files from
the environment the benchmark starts the workers with, so a job carries no arguments:

    mark()  appends its time and pid (16 bytes, one write(2) on a file the process keeps
            open) to $PEERS_MARK: the completion marker drain and pickup are read from
    spin()  appends its start time and pid (16 bytes) to $PEERS_SPIN, then spins in C
            (OpenSSL's PBKDF2, minutes of work) where no Python signal handler can run:
            only a kill of its process ends it early
"""

import hashlib
import os
import struct
import time

MARK = struct.Struct("dq")
SPIN = struct.Struct("dq")
SPIN_ITERATIONS = 2_000_000_000  # below INT_MAX; ~10 minutes of SHA-256 on one core

_opened = {}  # (pid, variable) -> fd: a forked child opens its own


def _fd(variable: str) -> int:
    key = (os.getpid(), variable)
    fd = _opened.get(key)
    if fd is None:
        fd = _opened[key] = os.open(os.environ[variable], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return fd


def mark() -> None:
    os.write(_fd("PEERS_MARK"), MARK.pack(time.time(), os.getpid()))


def spin() -> None:
    os.write(_fd("PEERS_SPIN"), SPIN.pack(time.time(), os.getpid()))
    hashlib.pbkdf2_hmac("sha256", b"jobrt", b"peers", SPIN_ITERATIONS)
