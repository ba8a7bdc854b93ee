"""Counters the supervisor keeps for heartbeats, `jobrt status` and the metrics endpoint."""

from __future__ import annotations

import time


class Stats:
    def __init__(self, metrics=None, minutes=None):
        self.metrics = metrics  # a runtime.supervisor.metrics.Metrics when [metrics] listen is set
        self.minutes = minutes  # a runtime.supervisor.minutes.MinuteTally (the supervisor's)
        self.done = 0
        self.restarts: dict[str, int] = {}
        self.rate = 0.0
        self._last_done = 0
        self._last_at = time.monotonic()

    def finished(self, queue: str, outcome: str, seconds: float, name: str = "") -> None:
        """A run of job `name` ended: succeeded, failed, retried, released, timeout, memory
        or crashed."""
        self.done += 1
        if self.metrics is not None:
            self.metrics.job_finished(queue, outcome, seconds)
        if self.minutes is not None:
            self.minutes.finished(time.time(), queue, name, outcome, seconds)

    def claimed(self, wall: float, jobs) -> None:
        """Jobs were claimed at `wall` (epoch seconds): their waits since available_at."""
        if self.minutes is not None:
            self.minutes.claimed(wall, jobs)

    def restarted(self, pool: str, reason: str) -> None:
        """A worker was replaced. Killed while running a job: timeout, memory (past memory_limit_mb),
        signal (killed by one from outside), crash (exited, or broke its pipe); could not start:
        boot; recycled: max_jobs, max_time, max_memory (past max_memory_mb), scaled down."""
        self.restarts[reason] = self.restarts.get(reason, 0) + 1
        if self.metrics is not None:
            self.metrics.worker_restarted(pool, reason)

    def update_rate(self, now: float) -> None:
        elapsed = now - self._last_at
        if elapsed >= 0.1:
            self.rate = 0.5 * self.rate + 0.5 * (self.done - self._last_done) / elapsed
            self._last_done, self._last_at = self.done, now
