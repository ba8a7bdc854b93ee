"""The supervisor's records of its workers and of the jobs it sent them.

A Worker is one forked worker process as its WorkerPool sees it: its pipes,
the frames half-read from it, the Runs sent to it in order (the first one is
running, the rest wait in its pipe), and why it is leaving, if it is.
"""

from __future__ import annotations

import os
from collections import deque

from runtime.workers import protocol
from runtime.workers.process import Child


class Run:
    """One job for one worker: its options decoded once, when the pool was given it."""

    __slots__ = ("job", "options", "timeout", "calls", "started", "deadline", "told")

    def __init__(self, job, options, timeout: float, calls: int = 1):
        self.job = job
        self.options = options  # JobOptions
        self.timeout = timeout
        self.calls = calls  # what it counts for max_jobs: the embedded Pool sends batches of calls
        self.started = None
        self.deadline = None
        self.told = None  # with runtime.events hooks: what its end would mean (event_relay)

    def start(self, now: float) -> None:
        self.started = now
        self.deadline = now + self.timeout


class Worker:
    """The supervisor's record of one worker process."""

    __slots__ = ("child", "reader", "outbuf", "runs", "jobs_done", "max_jobs", "retire_at",
                 "retiring", "killed", "said_bye", "boot_error", "rss", "queue", "standby")

    def __init__(self, child: Child, max_jobs: int, retire_at: float):
        self.child = child
        self.reader = protocol.FrameReader()
        self.outbuf = bytearray()
        self.runs: deque[Run] = deque()
        self.jobs_done = 0
        self.max_jobs = max_jobs
        self.retire_at = retire_at
        self.retiring: str | None = None  # why it was told to stop
        self.killed: str | None = None  # why it was killed
        self.said_bye = False
        self.boot_error: str | None = None  # why it could not start, as it reported
        self.rss = 0
        self.queue: str | None = None  # the one queue it serves in a balanced pool; None: all, or none
        self.standby = False  # started ahead of a worker about to be recycled: takes no job until then

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def active(self) -> bool:
        return self.retiring is None and self.killed is None

    def write(self, data: bytes) -> bool:
        """Send `data` down the worker's pipe, keeping what does not fit in `outbuf`;
        True when some is left, so the loop should wait until the pipe is writable."""
        if self.outbuf:
            self.outbuf += data
            return True
        try:
            written = os.write(self.child.to_child, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return False  # broken pipe: the pidfd reports the death
        if written < len(data):
            self.outbuf += data[written:]
            return True
        return False

    def flush(self) -> bool:
        """Write more of `outbuf`; True when it is empty."""
        try:
            written = os.write(self.child.to_child, self.outbuf)
        except BlockingIOError:
            return False
        except OSError:
            self.outbuf.clear()
        else:
            del self.outbuf[:written]
        return not self.outbuf
