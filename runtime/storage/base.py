"""The storage contract: the domain verbs every backend implements.

The supervisor is the only writer on a host (it batches claims and results);
clients only enqueue and query. Times are UNIX epoch seconds (float). Job
payloads and results are JSON bytes that storage keeps verbatim: it never
decodes them on the hot path and never unpickles anything.

A claimed job is `running`, owned by one supervisor (`owner`) until
`lease_expires`. Every write that settles a claim is fenced by
(id, attempt, owner): a stale run cannot overwrite a newer one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

import orjson

from runtime.storage.browse import BrowseVerbs
from runtime.storage.ops import OpsVerbs
from runtime.storage.job_sets import JobSetVerbs
from runtime.storage.ticks import TickVerbs
from runtime.storage.workflows import WorkflowVerbs

PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ENDED = (SUCCEEDED, FAILED, CANCELLED)  # states a job never leaves by itself; `prune` deletes them
PRUNE_BATCH = 500  # a `prune` limit that keeps each delete transaction short


class NewJob(NamedTuple):
    """A job to insert. `payload` is the JSON of `[args, kwargs]`."""

    queue: str
    name: str
    payload: bytes
    available_at: float
    priority: int = 0
    options: bytes | None = None  # JSON object of per-job options, None = pool defaults
    unique_key: str | None = None
    batch_id: str | None = None
    unique_expires: float | None = None  # unique_for: the key is free from then on
    unique_at_start: bool = False  # unique_until="start": the key is free once it starts
    overlap_key: str | None = None  # without_overlapping: one job with the key runs at a time
    rate_key: str | None = None  # rate_limit: its limiter's key (see runtime.gates)
    rate_max: int = 0  # ... which lets rate_max jobs start in any rate_period seconds
    rate_period: float = 0.0
    tags: tuple = ()  # labels to find it by (runtime.tags): `jobrt jobs --tag T`


class ClaimedJob(NamedTuple):
    """A job handed to one supervisor; `attempt` already counts this run (1 = first),
    `exceptions` the runs before it that raised (for max_exceptions)."""

    id: int
    queue: str
    name: str
    payload: bytes
    attempt: int
    options: bytes | None
    exceptions: int = 0
    overlap_key: str | None = None  # its keys, which its outcome carries back to `settle`
    rate_key: str | None = None
    retried_at: float | None = None  # an operator retried it (failed retry) then: its first run since
    batch_id: str | None = None  # the batch it is a member of
    chain_id: int | None = None  # the chain it is a step of
    context: dict | None = None  # what the job may ask of its run: runtime.supervisor.run_context
    available_at: float | None = None  # when it became due: the supervisor counts its wait


class Outcome(NamedTuple):
    """How one claimed run ended, to be written by `settle`.

    state:
      succeeded  -> `result` (JSON bytes or None) is stored.
      failed     -> `error` / `traceback` stored; the job is in the failed-jobs store.
      pending    -> back in the queue at `available_at` (retry with backoff, or
                    release); `error` / `traceback` kept as the last error.
                    With `undo_attempt` the run never started (returned unstarted),
                    so the attempt counter goes back by one.
    `at` is when the run ended (finished_at for end states). `reason` says how a run
    that did not succeed ended (runtime.workers.retry_rules: error, timeout, signal, crash); the
    embedded Pool reports it, storage does not keep it. `exception`: the run raised, so the
    job's count of exceptions (max_exceptions) grows by one. `queue` and `name` are the
    job's, as claimed: with them the SQLite backend counts a settle without reading its row;
    `overlap_key` and `rate_key` are the job's, as claimed, and required (a settle lets
    the next job of its keys through without reading its row, and a job without them
    costs nothing there).
    """

    job_id: int
    attempt: int
    state: str
    at: float
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    available_at: float | None = None
    undo_attempt: bool = False
    reason: str | None = None
    exception: bool = False
    queue: str | None = None
    name: str | None = None
    overlap_key: str | None = None
    rate_key: str | None = None


@dataclass
class JobRecord:
    """Everything storage knows about one job, decoded for humans and `--json`."""

    id: int
    queue: str
    name: str
    args: list
    kwargs: dict
    state: str
    attempts: int
    priority: int
    available_at: float
    created_at: float
    options: dict = field(default_factory=dict)
    owner: str | None = None
    lease_expires: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    result: object = None
    unique_key: str | None = None
    batch_id: str | None = None
    exceptions: int = 0  # runs that raised
    overlap_key: str | None = None
    rate_key: str | None = None
    chain_id: int | None = None  # the chain it is a step of
    tags: list = field(default_factory=list)  # sorted; filled by get() and jobs_page() only

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "state": self.state,
            "attempts": self.attempts,
            "exceptions": self.exceptions,
            "error": self.error,
            "result": self.result,
            "args": self.args,
            "kwargs": self.kwargs,
            "priority": self.priority,
            "options": self.options,
            "available_at": self.available_at,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "owner": self.owner,
            "lease_expires": self.lease_expires,
            "traceback": self.traceback,
            "unique_key": self.unique_key,
            "batch_id": self.batch_id,
            "overlap_key": self.overlap_key,
            "rate_key": self.rate_key,
            "chain_id": self.chain_id,
            "tags": self.tags,
        }


class SupervisorRow(NamedTuple):
    """A supervisor's heartbeat: who it is and what its workers are doing."""

    owner: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    info: dict


def decode_record(row: dict) -> JobRecord:
    """Build a JobRecord from a row mapping whose payload/options/result are JSON bytes."""
    args, kwargs = orjson.loads(row["payload"])
    options = orjson.loads(row["options"]) if row.get("options") else {}
    result = orjson.loads(row["result"]) if row.get("result") is not None else None
    return JobRecord(
        id=row["id"], queue=row["queue"], name=row["name"], args=args, kwargs=kwargs,
        state=row["state"], attempts=row["attempts"], priority=row["priority"],
        available_at=row["available_at"], created_at=row["created_at"], options=options,
        owner=row.get("owner"), lease_expires=row.get("lease_expires"),
        started_at=row.get("started_at"), finished_at=row.get("finished_at"),
        error=row.get("error"), traceback=row.get("traceback"), result=result,
        unique_key=row.get("unique_key"), batch_id=row.get("batch_id"),
        exceptions=row.get("exceptions") or 0, overlap_key=row.get("overlap_key"),
        rate_key=row.get("rate_key"), chain_id=row.get("chain_id"),
    )


COUNT_KEYS = ("pending", "delayed", "running", "succeeded", "failed", "cancelled")


def assemble_counts(rows: Iterable[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    """counts() from (queue, bucket, n) rows, as the SQL backends read them from their
    counters: a bucket is a state (pending: due and delayed together) or "delayed" (rows
    to add up). A queue is listed while it holds any job; pending becomes the due ones."""
    states: dict[str, dict[str, int]] = {}
    delayed: dict[str, int] = {}
    for queue, bucket, n in rows:
        if bucket == "delayed":
            delayed[queue] = delayed.get(queue, 0) + n
        else:
            per_queue = states.setdefault(queue, dict.fromkeys(COUNT_KEYS, 0))
            per_queue[bucket] += n
    out = {}
    for queue, per_queue in states.items():
        if any(per_queue.values()):
            per_queue["delayed"] = delayed.get(queue, 0)
            per_queue["pending"] -= per_queue["delayed"]
            out[queue] = per_queue
    return out


class Storage(WorkflowVerbs, TickVerbs, BrowseVerbs, OpsVerbs, JobSetVerbs):
    """Base class of storage backends. Subclasses implement every verb below.

    Backends are opened by `runtime.storage.open_storage(url, role=...)`.
    `role="client"` commits durably (an enqueue that returned survives a power
    cut); `role="supervisor"` may relax that, since a lost result write only
    means the job runs again.
    """

    url_for_humans: str = ""
    # Seconds a call may wait for the server (PostgreSQL's; SQLite and memory wait on none);
    # None: unbounded. The supervisor sets it at open and again on each reload.
    call_timeout: float | None = None
    # How many outcomes the last exchange (or settle) refused: runs no longer current
    # (fenced by attempt and owner: rescued, rerun, or reported twice).
    refused: int = 0
    # The longest one call may block on an unreachable storage (seconds, roughly).
    longest_call: float = 0.2

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        raise NotImplementedError

    # -- clients ---------------------------------------------------------
    def enqueue(self, jobs: list[NewJob]) -> list[int]:
        """Insert all jobs in one transaction (all or none); return their ids in order.

        A job whose `unique_key` matches a pending or running job is not
        inserted; the existing job's id is returned in its place.
        """
        raise NotImplementedError

    def notify(self) -> None:
        """Wake the supervisors of this database (after an enqueue committed). Best effort."""
        raise NotImplementedError

    def listener(self):
        """For a supervisor: an object with fileno(), drain() and close() that becomes
        readable when a client calls notify() (fileno() -1 when unsupported)."""
        raise NotImplementedError

    # -- the supervisor's hot path -----------------------------------------
    def exchange(self, owner: str, outcomes: Iterable[Outcome], queues: list[str],
                 limit: int, lease_expires: float, now: float) -> list[ClaimedJob]:
        """In one transaction: settle `outcomes`, then claim up to `limit` jobs.

        Claims take jobs that are pending with `available_at <= now`, from
        `queues` in strict order (every due job of queues[0] before any of
        queues[1]), then by priority (higher first), available_at and id.
        Each claimed job becomes running, owned by `owner` until
        `lease_expires`, with its attempt counter incremented.
        Settling is fenced: an outcome whose (job_id, attempt, owner) no longer
        matches a running job is ignored.

        Gates hold some pending jobs back (they use no attempt meanwhile):
        - a job with an `overlap_key` only while no job with that key runs, and only
          the first, by (available_at, id), of the pending jobs with that key;
        - a job with a `rate_key` only if the overlap rule lets it through, it is the
          first, by (available_at, id), of the pending jobs of its key that the overlap
          rule lets through, fewer than its `rate_max` jobs of the key started in
          (now - rate_period, now], and this call claimed no other job of the key.
        Jobs held back are out of the claim order's index: they cost a claim nothing.
        """
        raise NotImplementedError

    def settle(self, owner: str, outcomes: Iterable[Outcome]) -> None:
        self.exchange(owner, outcomes, [], 0, 0.0, 0.0)

    def claim(self, owner: str, queues: list[str], limit: int, lease_expires: float,
              now: float) -> list[ClaimedJob]:
        return self.exchange(owner, (), queues, limit, lease_expires, now)

    def next_due(self, queues: list[str]) -> float | None:
        """The earliest time a claim could take a job of `queues` that it cannot take now:
        the least available_at of their pending jobs that no gate holds back, or the
        time a rate limiter of any queue has a free slot again, whichever is first;
        None when there is neither."""
        raise NotImplementedError

    def oldest_pending(self, now: float) -> float | None:
        """The available_at of the due job that has waited longest: the least available_at
        of the pending jobs, in any queue, with available_at <= `now`; None when no job is
        due (delayed jobs are not waiting yet). `now - oldest_pending(now)` is that wait.
        For `jobrt health`: one index probe per queue that has pending jobs."""
        raise NotImplementedError

    # -- leases and supervisors --------------------------------------------
    def clock(self) -> float:
        """Now, as epoch seconds, by the clock that judges leases: the database server's
        where supervisors of many hosts share it (PostgreSQL), else this host's."""
        return time.time()

    def heartbeat(self, owner: str, host: str, pid: int, started_at: float,
                  info: dict, now: float, lease_expires: float, *, held=None) -> int:
        """Record `owner` as alive (with `info` for status) and extend to `lease_expires`
        the lease of each job in `held` (ids) that it still runs. A supervisor passes the
        jobs it knows it holds, so a claim it never received (an exchange whose commit
        outcome was unknown) expires and is rescued. held=None renews all of owner's
        jobs. Returns how many leases were renewed."""
        raise NotImplementedError

    def supervisors(self) -> list[SupervisorRow]:
        raise NotImplementedError

    def remove_supervisor(self, owner: str) -> None:
        raise NotImplementedError

    def rescue(self, now: float, owner: str | None = None) -> int:
        """Return running jobs to pending: those of `owner` (a supervisor known to be
        dead), or, with owner None, those whose lease expired before `now`. The
        attempt stays counted and the last error says why. Returns the count."""
        raise NotImplementedError

    # -- queries and admin --------------------------------------------------
    def get(self, job_id: int) -> JobRecord | None:
        raise NotImplementedError

    def counts(self, now: float) -> dict[str, dict[str, int]]:
        """queue -> {pending, delayed, running, succeeded, failed, cancelled}, for every
        queue that holds a job. `pending` counts due jobs only; `delayed` those with
        available_at > now. Exact, and cheap whatever the size of the table: a supervisor
        with metrics on reads it every heartbeat. The SQL backends read counters their
        triggers keep in the same transaction as every job change, never the job rows
        (but those pending in `now`'s 16 s, counted in an index)."""
        raise NotImplementedError

    def pending_by_queue_and_name(self) -> list[tuple[str, str, int]]:
        """(queue, name, count) of the pending jobs, due and delayed alike, one row per
        queue and job name that has any, ordered by queue then name. For `jobrt health`
        and `jobrt status` (which jobs no live supervisor would run), from the same
        counters as counts(), never the table."""
        raise NotImplementedError

    def failed(self, limit: int = 100) -> list[JobRecord]:
        """The failed-jobs store, newest first."""
        raise NotImplementedError

    def retry_failed(self, job_ids: list[int] | None, now: float) -> int:
        """Put failed jobs (all when job_ids is None) back to pending with attempts 0; the
        next claim of each says `retried_at` (now), for the events of that run."""
        raise NotImplementedError

    def forget(self, job_id: int) -> bool:
        """Delete one failed job from the failed-jobs store."""
        raise NotImplementedError

    def flush_failed(self) -> int:
        """Delete every failed job."""
        raise NotImplementedError

    def cancel(self, job_id: int, now: float) -> str | None:
        """Cancel a job; returns the state it was in: "pending" (now cancelled), "running"
        (marked: its supervisor kills its worker and settles it cancelled; one that is put
        back to wait meanwhile, by a retry or a rescue, is cancelled then), or the state it
        ended in (left as it is). None: no such job."""
        raise NotImplementedError

    def cancel_requests(self, owner: str) -> list[tuple[int, int]]:
        """(job id, attempt) of the running jobs of `owner` that were asked to cancel."""
        raise NotImplementedError

    def clear(self, queue: str, now: float | None = None) -> int:
        """Delete the pending jobs of `queue` (running ones finish). Returns the count.
        `now` (default: the clock) dates what that finishes, a batch whose last members
        they were."""
        raise NotImplementedError

    # -- retention ------------------------------------------------------------
    def prune(self, before: float, limit: int) -> int:
        """Delete up to `limit` ended jobs (succeeded, failed, cancelled) whose finished_at
        is earlier than `before`, oldest finished_at first (then lowest id); return how
        many. Failed jobs age out of the failed-jobs store the same way. Pending and
        running jobs are never touched, however old. Ids stay unused afterwards.

        One short transaction per call, walking an index of ended jobs only, so a
        big table costs nothing extra. Keep `limit` small (`PRUNE_BATCH`) and call
        again while the return equals `limit`: the write lock (SQLite) or the row
        locks (PostgreSQL) are then never held long. `limit <= 0` deletes nothing."""
        raise NotImplementedError
