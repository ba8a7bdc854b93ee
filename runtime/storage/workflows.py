"""The records of workflows (batches and chains) the storage contract speaks of, and the
small rules every backend shares about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import orjson


class NewBatch(NamedTuple):
    """A batch to create with its members: the job names of its callbacks (None: none),
    which storage enqueues on `queue`, each with the batch's record as its one argument."""

    queue: str
    name: str | None = None
    then: str | None = None  # all members succeeded
    catch: str | None = None  # the first member failed for good
    finally_: str | None = None  # no member is pending or running any more
    allow_failures: bool = False  # else the first failure cancels the pending members


@dataclass
class BatchRecord:
    """A batch's counts and times, read from its own row (never by scanning members) plus
    its running members (at most the workers' count, from an index)."""

    id: int
    name: str | None
    queue: str
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    created_at: float
    finished_at: float | None
    cancelled_at: float | None
    failed_job_ids: list
    allow_failures: bool
    then: str | None = None
    catch: str | None = None
    finally_: str | None = None

    @property
    def progress(self) -> int:
        """Members ended, in percent of all (100 for an empty batch), rounded down."""
        ended = self.succeeded + self.failed + self.cancelled
        return 100 if self.total == 0 else ended * 100 // self.total

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "queue": self.queue, "total": self.total,
                "pending": self.pending, "running": self.running, "succeeded": self.succeeded,
                "failed": self.failed, "cancelled": self.cancelled, "progress": self.progress,
                "created_at": self.created_at, "finished_at": self.finished_at,
                "cancelled_at": self.cancelled_at, "failed_job_ids": self.failed_job_ids,
                "allow_failures": self.allow_failures, "then": self.then, "catch": self.catch,
                "finally": self.finally_}


def batch_record(row: dict, running: int) -> BatchRecord:
    """A BatchRecord from a batches row (and how many members run)."""
    ended = row["succeeded"] + row["failed"] + row["cancelled"]
    failed_ids = row["failed_ids"]
    return BatchRecord(
        id=row["id"], name=row["name"], queue=row["queue"], total=row["total"],
        pending=row["total"] - ended - running, running=running, succeeded=row["succeeded"],
        failed=row["failed"], cancelled=row["cancelled"], created_at=row["created_at"],
        finished_at=row["finished_at"], cancelled_at=row["cancelled_at"],
        failed_job_ids=sorted(orjson.loads(failed_ids) if isinstance(failed_ids, (str, bytes))
                              else failed_ids),
        allow_failures=bool(row["allow_failures"]), then=row["then_job"],
        catch=row["catch_job"], finally_=row["finally_job"])


def batch_time(outcomes, now: float) -> float:
    """The time of an exchange's batch work: its `now`, or when it only settles (now 0),
    when its last outcome ended."""
    return max([now] + [o.at for o in outcomes])


@dataclass
class ChainRecord:
    """A chain's steps, run one after another: step n+1 is enqueued in the transaction that
    records step n's success. `jobs` holds the job id of each step enqueued so far."""

    id: int
    queue: str  # where its catch callback runs
    state: str  # running, succeeded, failed (a step failed for good), cancelled
    steps: list  # the job name of each step
    jobs: list  # the job id of each step enqueued so far, in order
    created_at: float
    finished_at: float | None
    catch: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "queue": self.queue, "state": self.state, "steps": self.steps,
                "jobs": self.jobs, "created_at": self.created_at,
                "finished_at": self.finished_at, "catch": self.catch}


def step_spec(step) -> list:
    """A chain's step as its chain's row keeps it, a JSON array (its available_at is its
    delay): [queue, name, payload, priority, options, delay, overlap_key, rate_key,
    rate_max, rate_period], payload and options as text."""
    return [step.queue, step.name, bytes(step.payload).decode(), step.priority,
            None if step.options is None else bytes(step.options).decode(), step.available_at,
            step.overlap_key, step.rate_key, step.rate_max, step.rate_period]


# The bits of a batch's `fired`: which callbacks storage has enqueued (each at most once).
THEN_FIRED, CATCH_FIRED, FINALLY_FIRED = 1, 2, 4
