"""Jobs for the network partition tests (tests/chaos/test_partitions.py) and
benchmarks/partitions.py.

A run of `record` appends lines `WHAT job_id attempt host pid wall` to
`runs-HOST.log` in the directory it is given: `start` before its work, `tick`
every TICK s while it works (a sleep of `seconds`), `end` after. Each line is
one O_APPEND write followed by fsync, so the log survives what the test does to
the host, and a run killed midway (a supervisor fencing itself) still shows how
long it ran, to within TICK. HOST is $JOBRT_HOST, which the test sets per host;
`wall` is time.time(): the test hosts share this machine's clock, so runs on
different hosts compare. tests/chaos/partition_checker.py reads the logs.
"""

import os
import socket
import time

import runtime
from runtime import job

TICK = 0.1  # seconds between `tick` lines of a run


def line(what: str, job_id: int, attempt: int, host: str, pid: int, wall: float) -> str:
    """One line of a runs log (the checker parses exactly this)."""
    return f"{what} {job_id} {attempt} {host} {pid} {wall:.6f}\n"


@job
def record(directory: str, seconds: float) -> None:
    host = os.environ.get("JOBRT_HOST") or socket.gethostname()
    fd = os.open(os.path.join(directory, f"runs-{host}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(what: str) -> None:
        os.write(fd, line(what, runtime.job_id(), runtime.attempt(), host, os.getpid(), time.time()).encode())
        os.fsync(fd)

    try:
        write("start")
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(TICK, left))  # the job's work: time spent, as a real job would
            if left > TICK:
                write("tick")
        write("end")
    finally:
        os.close(fd)
