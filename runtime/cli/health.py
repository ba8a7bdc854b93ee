"""`jobrt health`: the state of a deployment, judged against the [health] thresholds.

    storage --gather--> Counts --evaluate([health])--> Report (status, reasons, checks)

`gather` reads storage (supervisors' heartbeats, per-queue counts, the
longest-waiting due job, pending jobs per queue and name, to find those no live
supervisor would run); `evaluate` is pure, so thresholds are easy to test.
Each check is healthy, warning or critical; the worst one is the status, and
its exit status is 0, 1 or 2 (as Nagios-style checks expect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from runtime.config.load import HealthConfig

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
EXIT_STATUS = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}
LIVE_HEARTBEAT_S = 30  # a supervisor silent for longer runs nothing (it heartbeats every <= 2 s)
LISTED = 10  # queues or job names a reason line names; --json's checks hold them all


def live_supervisors(storage, now: float) -> list:
    """The SupervisorRows of every supervisor whose heartbeat is recent."""
    # A supervisor that stopped heartbeating is not running anything.
    return [row for row in storage.supervisors() if row.heartbeat_at >= now - LIVE_HEARTBEAT_S]


def live_workers(storage, now: float, rows=None) -> tuple[list[dict], list[dict]]:
    """(supervisors, workers) of every supervisor whose heartbeat is recent, for status and health;
    `rows` are live_supervisors() when the caller already read them."""
    supervisors, workers = [], []
    for row in live_supervisors(storage, now) if rows is None else rows:
        supervisors.append({"owner": row.owner, "host": row.host, "pid": row.pid,
                            "heartbeat_at": row.heartbeat_at, "rate": row.info.get("rate"),
                            "done": row.info.get("done"), "pools": row.info.get("pools", {})})
        for worker in row.info.get("workers", []):
            workers.append(dict(worker, supervisor=row.owner, host=row.host))
    return supervisors, workers


class Stranded(NamedTuple):
    """Pending jobs (due or delayed) that no live supervisor would run: those of a queue no
    live pool serves (kind "queue", subject the queue), or those whose name no live
    supervisor registers (kind "job", subject the job name)."""

    kind: str
    subject: str
    pending: int

    def message(self) -> str:
        if self.kind == "queue":
            return (f"queue {self.subject}: {_plural(self.pending, 'pending job')}, "
                    f"but no live pool serves it")
        return f"job {self.subject}: {self.pending} pending, no live supervisor registers it"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "queue" if self.kind == "queue" else "name": self.subject,
                "pending": self.pending, "message": self.message()}


def stranded(rows, pending) -> list[Stranded] | None:
    """Which pending jobs no live supervisor would run, from the live supervisors' heartbeats
    (`rows`, whose info carries "pools": {name: {"queues": [...]}} and "jobs": [names]) and
    `pending` (storage.pending_by_queue_and_name()). None without a live supervisor: then
    nothing runs at all, which the workers check reports. A supervisor whose heartbeat lacks
    "pools" or "jobs" (an older jobrt) may serve anything: that side is not judged."""
    if not rows:
        return None
    served: set[str] | None = set()
    known: set[str] | None = set()
    for row in rows:
        pools, jobs = row.info.get("pools"), row.info.get("jobs")
        if pools is None or served is None:
            served = None
        else:
            served.update(queue for pool in pools.values() for queue in pool.get("queues", ()))
        if jobs is None or known is None:
            known = None
        else:
            known.update(jobs)
    queues: dict[str, int] = {}
    names: dict[str, int] = {}
    for queue, name, count in pending:
        if served is not None and queue not in served:
            queues[queue] = queues.get(queue, 0) + count
        if known is not None and name not in known:
            names[name] = names.get(name, 0) + count
    return ([Stranded("queue", queue, n) for queue, n in sorted(queues.items())]
            + [Stranded("job", name, n) for name, n in sorted(names.items())])


def read_stranded(storage, now: float, rows=None) -> list[Stranded] | None:
    """stranded() over storage; reads the pending counts only when a supervisor is live."""
    rows = live_supervisors(storage, now) if rows is None else rows
    return stranded(rows, storage.pending_by_queue_and_name()) if rows else None


class Counts(NamedTuple):
    """What the checks look at."""

    workers: int  # live workers
    pending: int  # due pending jobs, all queues (delayed ones are not waiting yet)
    oldest_wait: float | None  # seconds the longest-waiting due job has waited; None: none due
    failed: int  # jobs in the failed-jobs store
    stranded: list[Stranded] | None = None  # pending jobs no live supervisor runs; None: not judged
    paused_queues: tuple = ()  # `jobrt pause`: shown, not judged (an operator chose it)


@dataclass
class Report:
    status: str
    reasons: list[str]  # one line per check that is not healthy, worst first
    checks: dict[str, dict]
    paused_queues: tuple = ()

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.status]

    def to_dict(self) -> dict:
        return {"status": self.status, "reasons": self.reasons, "checks": self.checks,
                "paused_queues": list(self.paused_queues)}


def gather(storage, now: float) -> Counts:
    rows = live_supervisors(storage, now)
    _, workers = live_workers(storage, now, rows)
    counts = storage.counts(now).values()
    oldest = storage.oldest_pending(now)
    return Counts(workers=len(workers), pending=sum(c["pending"] for c in counts),
                  oldest_wait=None if oldest is None else max(0.0, now - oldest),
                  failed=sum(c["failed"] for c in counts), stranded=read_stranded(storage, now, rows),
                  paused_queues=tuple(storage.paused_queues()))


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
    for name, kind, what in (("unserved_queues", "queue", "in queues no live pool serves"),
                             ("unregistered_jobs", "job", "whose name no live supervisor registers")):
        # No threshold: one job that would never run is worth a warning. Not judged (value
        # None) without a live supervisor: the workers check already says nothing runs.
        found = None if counts.stranded is None else [s for s in counts.stranded if s.kind == kind]
        total = None if found is None else sum(s.pending for s in found)
        status = WARNING if total else HEALTHY
        checks[name] = {"status": status, "value": total, "warning": 1, "critical": 0,
                        kind + "s": None if found is None else {s.subject: s.pending for s in found}}
        if total:
            listed = ", ".join(f"{s.subject} ({s.pending})" for s in found[:LISTED])
            more = f" and {len(found) - LISTED} more" if len(found) > LISTED else ""
            reasons.append((-EXIT_STATUS[status],
                            f"{status}: {_plural(total, 'pending job')} {what}: {listed}{more}"))
    status = max((c["status"] for c in checks.values()), key=EXIT_STATUS.__getitem__)
    return Report(status, [text for _, text in sorted(reasons, key=lambda r: r[0])], checks,
                  counts.paused_queues)


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
