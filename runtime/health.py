"""`jobrt health`: the state of a deployment, judged against the [health] thresholds.

    storage --gather--> Counts --evaluate([health])--> Report (status, reasons, checks)

`gather` reads storage (supervisors' heartbeats, per-queue counts, the
longest-waiting due job); `evaluate` is pure, so thresholds are easy to test.
Each check is healthy, warning or critical; the worst one is the status, and
its exit status is 0, 1 or 2 (as Nagios-style checks expect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .config import HealthConfig

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
EXIT_STATUS = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}
LIVE_HEARTBEAT_S = 30  # a supervisor silent for longer runs nothing (it heartbeats every <= 2 s)


def live_workers(storage, now: float) -> tuple[list[dict], list[dict]]:
    """(supervisors, workers) of every supervisor whose heartbeat is recent, for status and health."""
    supervisors, workers = [], []
    for row in storage.supervisors():
        if row.heartbeat_at < now - LIVE_HEARTBEAT_S:
            continue  # a supervisor that stopped heartbeating is not running anything
        supervisors.append({"owner": row.owner, "host": row.host, "pid": row.pid,
                            "heartbeat_at": row.heartbeat_at, "rate": row.info.get("rate"),
                            "done": row.info.get("done")})
        for worker in row.info.get("workers", []):
            workers.append(dict(worker, supervisor=row.owner, host=row.host))
    return supervisors, workers


class Counts(NamedTuple):
    """What the checks look at."""

    workers: int  # live workers
    pending: int  # due pending jobs, all queues (delayed ones are not waiting yet)
    oldest_wait: float | None  # seconds the longest-waiting due job has waited; None: none due
    failed: int  # jobs in the failed-jobs store


@dataclass
class Report:
    status: str
    reasons: list[str]  # one line per check that is not healthy, worst first
    checks: dict[str, dict]

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.status]

    def to_dict(self) -> dict:
        return {"status": self.status, "reasons": self.reasons, "checks": self.checks}


def gather(storage, now: float) -> Counts:
    _, workers = live_workers(storage, now)
    counts = storage.counts(now).values()
    oldest = storage.oldest_pending(now)
    return Counts(workers=len(workers), pending=sum(c["pending"] for c in counts),
                  oldest_wait=None if oldest is None else max(0.0, now - oldest),
                  failed=sum(c["failed"] for c in counts))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def evaluate(health: HealthConfig, counts: Counts) -> Report:
    """Judge `counts` against `health`'s thresholds (0 = that level is off)."""
    checks: dict[str, dict] = {}
    reasons: list[tuple[int, str]] = []

    def check(name: str, value, fewer: bool, describe) -> None:
        warning, critical = getattr(health, f"{name}_warning"), getattr(health, f"{name}_critical")
        status, threshold = HEALTHY, None
        for level, limit in ((CRITICAL, critical), (WARNING, warning)):
            if limit and value is not None and (value < limit if fewer else value >= limit):
                status, threshold = level, limit
                break
        checks[name] = {"status": status, "value": value, "warning": warning, "critical": critical}
        if status != HEALTHY:
            reasons.append((-EXIT_STATUS[status], f"{status}: {describe(value, status, threshold)}"))

    check("workers", counts.workers, True, lambda n, status, limit: (
        "no live workers: is `jobrt start` running?" if n == 0 else
        f"{_plural(n, 'live worker')} ({status} below {limit})"))
    check("pending", counts.pending, False, lambda n, status, limit: (
        f"{_plural(n, 'due job')} waiting ({status} at {limit})"))
    check("oldest_pending", None if counts.oldest_wait is None else round(counts.oldest_wait, 1),
          False, lambda wait, status, limit: (
              f"the oldest due job has waited {wait:.0f} s ({status} at {limit:g} s)"))
    check("failed", counts.failed, False, lambda n, status, limit: (
        f"{_plural(n, 'job')} in the failed-jobs store ({status} at {limit})"))
    status = max((c["status"] for c in checks.values()), key=EXIT_STATUS.__getitem__)
    return Report(status, [text for _, text in sorted(reasons, key=lambda r: r[0])], checks)


def unreachable(error: Exception) -> Report:
    """The report when storage cannot be read at all: critical, whatever the thresholds."""
    message = str(error)
    return Report(CRITICAL, [f"{CRITICAL}: storage: {message}"],
                  {"storage": {"status": CRITICAL, "error": message}})


def summary(counts: Counts) -> str:
    """One line for a healthy deployment."""
    wait = "" if counts.oldest_wait is None else f" (the oldest waiting {counts.oldest_wait:.0f} s)"
    return (f"{HEALTHY}: {_plural(counts.workers, 'live worker')}, "
            f"{_plural(counts.pending, 'due job')}{wait}, {_plural(counts.failed, 'failed job')}")
