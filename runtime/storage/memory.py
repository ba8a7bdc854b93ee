"""The in-memory backend: the reference model of the storage contract.

Plain dicts, no indexes, no cleverness: every verb is written the most obvious
way, so property tests can hold the real backends to it. Lives and dies with
one process; every `open_storage("memory://")` is a new, empty store.
"""

from __future__ import annotations

import os
import time
from typing import Iterable

import orjson

from runtime.errors import StorageError
from runtime.storage import wakeup
from runtime.storage.memory_batches import MemoryBatches
from runtime.storage.memory_browse import MemoryBrowse
from runtime.storage.memory_chains import MemoryChains
from runtime.storage.memory_ops import MemoryOps
from runtime.storage.memory_job_sets import MemoryJobSets
from runtime.storage.memory_ticks import MemoryTicks
from runtime.storage.base import (
    CANCELLED, ENDED, FAILED, PENDING, RUNNING, SUCCEEDED, ClaimedJob, JobRecord, NewJob, Outcome,
    Storage, SupervisorRow, decode_record,
)
from runtime.storage.workflows import batch_time

LIVE = (PENDING, RUNNING)  # states in which a unique key is held


class MemoryStorage(MemoryBatches, MemoryChains, MemoryTicks, MemoryBrowse, MemoryOps, MemoryJobSets,
                    Storage):
    """Jobs in a dict keyed by id; ids start at 1 and are never reused."""

    url_for_humans = "memory://"

    def __init__(self, clock=time.time) -> None:
        # What "now" is when a verb is not told: runtime.testing's eager queue runs it on a
        # fake clock, so delays and backoffs pass without waiting.
        self.clock = clock
        self.jobs: dict[int, dict] = {}
        self.sups: dict[str, SupervisorRow] = {}
        self.last_id = 0
        self.starts: dict[str, list[float]] = {}  # rate key -> when its jobs started
        self.key = f"memory:{os.getpid()}:{id(self)}"
        self.waker = wakeup.Waker(self.key)
        self._batches_init()
        self._chains_init()
        self._ticks_init()
        self._ops_init()
        self.minute_rows: dict = {}  # (minute, queue, name) -> MinuteRow

    def close(self) -> None:
        self.waker.close()

    # -- clients ---------------------------------------------------------
    def enqueue(self, jobs: list[NewJob]) -> list[int]:
        for job in jobs:  # all or none: refuse before inserting anything
            if not (isinstance(job.queue, str) and isinstance(job.name, str)
                    and isinstance(job.payload, bytes) and job.available_at is not None
                    and job.priority is not None):
                raise StorageError(f"memory://: the storage rejected the job {job!r}")
        now = self.clock()
        ids = []
        for job in jobs:
            self._expire_key(job.unique_key, now)
            existing = self._live_with_key(job.unique_key)
            if existing is not None:
                ids.append(existing)
                continue
            ids.append(self._insert(job, now))
            if job.tags:
                self.jobs[ids[-1]]["tags"] = tuple(sorted(set(job.tags)))
        return ids

    def _insert(self, job: NewJob, now: float) -> int:
        self.last_id += 1
        self.jobs[self.last_id] = dict(
            id=self.last_id, queue=job.queue, name=job.name, payload=job.payload,
            state=PENDING, priority=job.priority, attempts=0, options=job.options,
            available_at=job.available_at, owner=None, lease_expires=None, created_at=now,
            started_at=None, finished_at=None, error=None, traceback=None, result=None,
            unique_key=job.unique_key, batch_id=job.batch_id, exceptions=0,
            unique_expires=job.unique_expires, unique_at_start=bool(job.unique_at_start),
            cancel_requested=None, overlap_key=job.overlap_key, rate_key=job.rate_key,
            rate_max=job.rate_max, rate_period=job.rate_period, retried_at=None)
        return self.last_id

    def _expire_key(self, key: str | None, now: float) -> None:
        if key is None:
            return  # not a pass over every job per enqueue: the eager queue enqueues thousands
        for job in self.jobs.values():
            if job["unique_key"] == key and job["state"] in LIVE \
                    and job["unique_expires"] is not None and job["unique_expires"] <= now:
                job["unique_key"] = None

    def _live_with_key(self, key: str | None) -> int | None:
        if key is None:
            return None
        return next((i for i, j in self.jobs.items()
                     if j["unique_key"] == key and j["state"] in LIVE), None)

    def notify(self) -> None:
        self.waker.wake()

    def listener(self) -> wakeup.WakeListener:
        return wakeup.WakeListener(self.key)

    # -- the supervisor's hot path -----------------------------------------
    def exchange(self, owner: str, outcomes: Iterable[Outcome], queues: list[str],
                 limit: int, lease_expires: float, now: float) -> list[ClaimedJob]:
        outcomes = list(outcomes)
        for o in outcomes:
            if o.state not in (SUCCEEDED, FAILED, PENDING, CANCELLED):
                raise ValueError(f"an outcome's state is succeeded, failed, pending or "
                                 f"cancelled, not {o.state!r}")
        # Settled kind by kind (succeeded, failed, pending, cancelled), as the SQL backends do.
        failed: list[tuple[int, float]] = []
        self.refused = len(outcomes)
        for kind in (SUCCEEDED, FAILED, PENDING, CANCELLED):
            for o in outcomes:
                job = self.jobs.get(o.job_id)
                if o.state != kind or not job or job["state"] != RUNNING \
                        or job["attempts"] != o.attempt or job["owner"] != owner:
                    continue  # fenced: a stale run or another owner's
                self.refused -= 1
                job.update(state=kind, owner=None, lease_expires=None)
                self._moved(job, RUNNING, kind)
                if kind == SUCCEEDED:
                    job.update(result=o.result, finished_at=o.at, error=None, traceback=None)
                elif kind == FAILED:
                    job.update(error=o.error, traceback=o.traceback, finished_at=o.at,
                               exceptions=job["exceptions"] + (1 if o.exception else 0))
                    failed.append((job["id"], o.at))
                elif kind == CANCELLED:
                    job.update(error=o.error, finished_at=o.at)
                else:
                    job.update(available_at=o.at if o.available_at is None else o.available_at,
                               error=o.error, traceback=o.traceback,
                               attempts=job["attempts"] - (1 if o.undo_attempt else 0),
                               exceptions=job["exceptions"] + (1 if o.exception else 0))
                    self._cancel_retried(job, o.at)
        for job_id, at in sorted(failed):  # the hooks' ids in the order of their jobs'
            self._failure_hook(self.jobs[job_id], at)
        self._workflows_due(batch_time(outcomes, now))
        claimed: list[ClaimedJob] = []
        rate_keys: set[str] = set()  # one job per rate key and claim
        for queue in queues if limit > 0 else ():
            due = sorted((j for j in self.jobs.values() if j["state"] == PENDING
                          and j["queue"] == queue and j["available_at"] <= now),
                         key=lambda j: (-j["priority"], j["available_at"], j["id"]))
            for job in due:
                if len(claimed) >= limit:
                    break
                if not self._overlap_turn(job) or job["rate_key"] in rate_keys \
                        or not self._rate_turn(job, now):
                    continue
                job.update(state=RUNNING, owner=owner, lease_expires=lease_expires,
                           attempts=job["attempts"] + 1, started_at=now)
                if job["unique_at_start"]:
                    job["unique_key"] = None
                if job["rate_key"] is not None:
                    rate_keys.add(job["rate_key"])
                    self.starts.setdefault(job["rate_key"], []).append(now)
                claimed.append(ClaimedJob(job["id"], job["queue"], job["name"], job["payload"],
                                          job["attempts"], job["options"], job["exceptions"],
                                          job["overlap_key"], job["rate_key"], job["retried_at"],
                                          job["batch_id"], job.get("chain_id"),
                                          available_at=job["available_at"]))
                job["retried_at"] = None
        return claimed

    def _overlap_turn(self, job: dict) -> bool:
        """No job with its overlap key runs, and it is the first pending one with it."""
        key = job["overlap_key"]
        if key is None:
            return True
        if any(j["state"] == RUNNING and j["overlap_key"] == key for j in self.jobs.values()):
            return False
        return job is _first(j for j in self.jobs.values()
                             if j["state"] == PENDING and j["overlap_key"] == key)

    def _rate_turn(self, job: dict, now: float | None) -> bool:
        """It is the first pending job of its rate key that the overlap rule lets through,
        and (unless `now` is None) its limiter has a free slot at `now`."""
        key = job["rate_key"]
        if key is None:
            return True
        first = _first(j for j in self.jobs.values() if j["state"] == PENDING
                       and j["rate_key"] == key and self._overlap_turn(j))
        return job is first and (now is None or self._rate_opens(job) <= now)

    def _rate_opens(self, job: dict) -> float:
        """When its limiter next has a free slot: a window of rate_period that ends then holds
        fewer than rate_max starts."""
        starts = sorted(self.starts.get(job["rate_key"], ()))
        if len(starts) < job["rate_max"]:
            return float("-inf")
        return starts[-job["rate_max"]] + job["rate_period"]

    def next_due(self, queues: list[str]) -> float | None:
        due = [max(j["available_at"], self._rate_opens(j)) if j["rate_key"] else j["available_at"]
               for j in self.jobs.values()
               if j["state"] == PENDING and j["queue"] in queues and self._overlap_turn(j)
               and self._rate_turn(j, None)]
        return min(due) if due else None

    def oldest_pending(self, now: float) -> float | None:
        due = [j["available_at"] for j in self.jobs.values()
               if j["state"] == PENDING and j["available_at"] <= now]
        return min(due) if due else None

    # -- leases and supervisors --------------------------------------------
    def heartbeat(self, owner: str, host: str, pid: int, started_at: float,
                  info: dict, now: float, lease_expires: float, *, held=None) -> int:
        self.sups[owner] = SupervisorRow(owner, host, pid, started_at, now,
                                         orjson.loads(orjson.dumps(info)))
        held = None if held is None else set(held)
        mine = [j for j in self.jobs.values() if j["state"] == RUNNING and j["owner"] == owner
                and (held is None or j["id"] in held)]
        for job in mine:
            job["lease_expires"] = lease_expires
        return len(mine)

    def supervisors(self) -> list[SupervisorRow]:
        return sorted(self.sups.values(), key=lambda s: (s.started_at, s.owner))

    def remove_supervisor(self, owner: str) -> None:
        self.sups.pop(owner, None)

    def rescue(self, now: float, owner: str | None = None) -> int:
        count = 0
        for job in self.jobs.values():
            if job["state"] != RUNNING:
                continue
            if owner is None and job["lease_expires"] < now:
                error = (f"lease expired: its supervisor {job['owner']} stopped renewing it; "
                         f"returned to the queue")
            elif owner is not None and job["owner"] == owner:
                error = f"its supervisor {owner} died; returned to the queue"
            else:
                continue
            job.update(state=PENDING, owner=None, lease_expires=None, error=error, traceback=None)
            self._moved(job, RUNNING, PENDING)
            self._cancel_retried(job, now)
            count += 1
        self._workflows_due(now)
        return count

    def _moved(self, job: dict, before: str, after: str | None) -> None:
        """A job changed state (`after` None: deleted): its batch and chain follow."""
        self._member_moved(job, before, after)
        self._chain_moved(job, after)

    def _workflows_due(self, now: float) -> None:
        """What the batches and then the chains marked due enqueue, again while the chains
        made or changed a batch, as every backend orders it."""
        while True:
            self._batches_due(now)
            if not self._chains_due(now):
                break

    def _failure_hook(self, job: dict, at: float) -> None:
        """A job failed for good whose options name a failure hook: the hook's job, now."""
        options = orjson.loads(job["options"]) if job["options"] else {}
        if options.get("on_failure") is None:
            return
        args, kwargs = orjson.loads(job["payload"])
        record = {"id": job["id"], "name": job["name"], "queue": job["queue"], "args": args,
                  "kwargs": kwargs, "attempts": job["attempts"], "error": job["error"]}
        self._insert(NewJob(job["queue"], options["on_failure"], orjson.dumps([[record], {}]), at,
                            priority=job["priority"],
                            options=orjson.dumps({"tries": 1, "timeout": options.get("timeout")})),
                     at)

    def _cancel_retried(self, job: dict, now: float) -> None:
        """A job asked to cancel while it ran, put back to wait: cancelled instead."""
        if job["cancel_requested"] is not None:
            job.update(state=CANCELLED, finished_at=now)
            self._moved(job, PENDING, CANCELLED)

    def cancel_requests(self, owner: str) -> list[tuple[int, int]]:
        return [(i, j["attempts"]) for i, j in self.jobs.items() if j["state"] == RUNNING
                and j["owner"] == owner and j["cancel_requested"] is not None]

    # -- queries and admin --------------------------------------------------
    def get(self, job_id: int) -> JobRecord | None:
        job = self.jobs.get(job_id)
        return self._with_tags(decode_record(job)) if job else None

    def counts(self, now: float) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for job in self.jobs.values():
            bucket = job["state"]
            if bucket == PENDING and job["available_at"] > now:
                bucket = "delayed"
            per_queue = out.setdefault(job["queue"], dict.fromkeys(
                ("pending", "delayed", RUNNING, SUCCEEDED, FAILED, CANCELLED), 0))
            per_queue[bucket] += 1
        return out

    def pending_by_queue_and_name(self) -> list[tuple[str, str, int]]:
        found: dict[tuple[str, str], int] = {}
        for job in self.jobs.values():
            if job["state"] == PENDING:
                key = (job["queue"], job["name"])
                found[key] = found.get(key, 0) + 1
        return [(queue, name, n) for (queue, name), n in sorted(found.items())]

    def failed(self, limit: int = 100) -> list[JobRecord]:
        rows = sorted((j for j in self.jobs.values() if j["state"] == FAILED),
                      key=lambda j: (j["finished_at"], j["id"]), reverse=True)
        return [decode_record(j) for j in rows[:limit]]

    def retry_failed(self, job_ids: list[int] | None, now: float) -> int:
        ids = sorted(self.jobs if job_ids is None else set(job_ids))
        count = 0
        for job_id in ids:
            job = self.jobs.get(job_id)
            if not job or job["state"] != FAILED or self._live_with_key(job["unique_key"]):
                continue  # a failed job whose unique key a live job holds stays failed
            job.update(state=PENDING, attempts=0, available_at=now, owner=None,
                       lease_expires=None, finished_at=None, cancel_requested=None,
                       retried_at=now)
            self._moved(job, FAILED, PENDING)
            count += 1
        self._workflows_due(now)
        return count

    def forget(self, job_id: int) -> bool:
        if job_id in self.jobs and self.jobs[job_id]["state"] == FAILED:
            del self.jobs[job_id]
            return True
        return False

    def flush_failed(self) -> int:
        doomed = [i for i, j in self.jobs.items() if j["state"] == FAILED]
        for job_id in doomed:
            del self.jobs[job_id]
        return len(doomed)

    def cancel(self, job_id: int, now: float) -> str | None:
        job = self.jobs.get(job_id)
        if not job:
            return None
        before = job["state"]
        if before == PENDING:
            job.update(state=CANCELLED, finished_at=now, cancel_requested=now)
            self._moved(job, PENDING, CANCELLED)
            self._workflows_due(now)
        elif before == RUNNING:
            job["cancel_requested"] = now
        return before

    def clear(self, queue: str, now: float | None = None) -> int:
        doomed = [i for i, j in self.jobs.items() if j["queue"] == queue and j["state"] == PENDING]
        for job_id in doomed:
            self._moved(self.jobs.pop(job_id), PENDING, None)
        self._workflows_due(self.clock() if now is None else now)
        return len(doomed)

    # -- retention ------------------------------------------------------------
    def prune(self, before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        old = sorted((j for j in self.jobs.values()
                      if j["state"] in ENDED and j["finished_at"] < before),
                     key=lambda j: (j["finished_at"], j["id"]))
        for job in old[:limit]:
            del self.jobs[job["id"]]
        finished = sorted((b for b in self.batch_rows.values()
                           if b["finished_at"] is not None and b["finished_at"] < before),
                          key=lambda b: (b["finished_at"], b["id"]))
        for batch in finished[:limit]:
            del self.batch_rows[batch["id"]]
        finished = sorted((c for c in self.chain_rows.values()
                           if c["finished_at"] is not None and c["finished_at"] < before),
                          key=lambda c: (c["finished_at"], c["id"]))
        for chain in finished[:limit]:
            del self.chain_rows[chain["id"]]
        return len(old[:limit])


def _first(jobs) -> dict | None:
    """The job a gate lets through first: by (available_at, id)."""
    return min(jobs, key=lambda j: (j["available_at"], j["id"]), default=None)
