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

    @classmethod
    def from_dict(cls, found: dict) -> "BatchRecord":
        """The record to_dict() gave."""
        fields = {k: v for k, v in found.items() if k not in ("progress", "finally")}
        return cls(**fields, finally_=found.get("finally"))

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


class ChainMember(NamedTuple):
    """A member of a batch that is a chain (jobs only): its steps count in the batch's
    total, each step is a member when it is enqueued, and the steps a stopped chain never
    ran count as cancelled. Its steps' available_at is their delay, as create_chain's."""

    steps: list
    catch: str | None
    queue: str  # where its catch callback runs


class BatchStep(NamedTuple):
    """A step of a chain that is a batch (of jobs only, each available_at its delay): it is
    created when the chain reaches it, and the chain goes on when it finished with every
    member succeeded; it fails the chain when a member failed, cancels it when one was
    cancelled."""

    batch: NewBatch
    members: list


@dataclass
class ChainRecord:
    """A chain's steps, run one after another: step n+1 is enqueued in the transaction that
    records step n's success. `jobs` holds the job id of each step enqueued so far."""

    id: int
    queue: str  # where its catch callback runs
    state: str  # running, succeeded, failed (a step failed for good), cancelled
    steps: list  # each step's job name, or {"batch": its name, "members": how many}
    jobs: list  # each step's job id so far, in order, or {"batch": id} for a batch step
    created_at: float
    finished_at: float | None
    catch: str | None = None
    batch_id: int | None = None  # the batch it is a member of

    def to_dict(self) -> dict:
        return {"id": self.id, "queue": self.queue, "state": self.state, "steps": self.steps,
                "jobs": self.jobs, "created_at": self.created_at,
                "finished_at": self.finished_at, "catch": self.catch, "batch_id": self.batch_id}


def step_spec(step) -> list | dict:
    """A chain's step as its chain's row keeps it (its available_at is its delay): a job as
    the JSON array [queue, name, payload, priority, options, delay, overlap_key, rate_key,
    rate_max, rate_period] and, when it has tags, [..., tags], payload and options as text;
    a BatchStep as the object {"batch": [queue, name, then, catch, finally, allow_failures],
    "members": [job, ...]}."""
    if isinstance(step, BatchStep):
        b = step.batch
        return {"batch": [b.queue, b.name, b.then, b.catch, b.finally_, bool(b.allow_failures)],
                "members": [step_spec(member) for member in step.members]}
    spec = [step.queue, step.name, bytes(step.payload).decode(), step.priority,
            None if step.options is None else bytes(step.options).decode(), step.available_at,
            step.overlap_key, step.rate_key, step.rate_max, step.rate_period]
    return spec + [list(step.tags)] if step.tags else spec


def jobs_within(items: list) -> list:
    """Every job of a batch's members or a chain's steps, those of a nested ChainMember or
    BatchStep included: what a backend checks before it stores any of them."""
    return [job for item in items for job in (
        item.steps if isinstance(item, ChainMember) else
        item.members if isinstance(item, BatchStep) else [item])]


def step_label(spec) -> str | dict:
    """What ChainRecord.steps shows of a step spec: its job name, or its batch's name and
    size."""
    if isinstance(spec, dict):
        return {"batch": spec["batch"][1], "members": len(spec["members"])}
    return spec[1]


def step_outcome(batch_row: dict | None) -> str | None:
    """The state a batch step ended in, as a job step's: None while it runs (or is gone),
    succeeded when every member did, failed when one failed, else cancelled."""
    if batch_row is None or batch_row["finished_at"] is None:
        return None
    if batch_row["failed"] > 0:
        return "failed"
    return "succeeded" if batch_row["cancelled"] == 0 else "cancelled"



class WorkflowVerbs:
    """The storage contract's workflow verbs (runtime.storage.base.Storage has them)."""

    # -- batches ----------------------------------------------------------------
    def create_batch(self, batch: NewBatch, jobs: list, now: float) -> tuple[int, list[int]]:
        """Create a batch and its members (jobs with batch_id None: storage sets it) in one
        transaction; returns (batch id, member ids). An empty batch finishes at once. A
        member may be a chain (workflows.ChainMember, its id its first step's): each of its
        steps counts as a member, and the steps a stopped chain will not run as cancelled
        ones; it stops, cancelled, rather than go on in a cancelled batch.

        A batch's counts follow its members in the transaction of every change of their
        state. Its callbacks are jobs storage enqueues once each, in the transaction that
        makes them due, by whichever supervisor or client that is: `catch` when a member
        first fails for good (then, unless allow_failures, its pending members are
        cancelled), `then` when every member succeeded, `finally_` when no member is
        pending or running any more (after `then`). Each gets the batch's record
        (BatchRecord.to_dict()) as its one argument, on the batch's queue."""
        raise NotImplementedError

    def batch_add(self, batch_id: int, jobs: list, now: float) -> list[int] | None:
        """Add members to a batch that has not finished; None if there is none such."""
        raise NotImplementedError

    def batch(self, batch_id: int) -> BatchRecord | None:
        raise NotImplementedError

    def batches(self, limit: int = 100) -> list[BatchRecord]:
        """Newest first."""
        raise NotImplementedError

    def batch_cancel(self, batch_id: int, now: float, kill: bool = False) -> bool | None:
        """Cancel the pending members (running ones finish, or with `kill` are asked to
        stop, as cancel() asks a running job); None: no such batch, False: it had finished
        already."""
        raise NotImplementedError

    # -- chains -----------------------------------------------------------------
    def create_chain(self, steps: list, catch: str | None, queue: str,
                     now: float) -> tuple[int, int | None]:
        """Create a chain of steps (jobs without unique keys; each step's available_at is
        its delay after the moment it is enqueued) and enqueue its first step, in one
        transaction; returns (chain id, first step's job id). When a step succeeds, the
        next is enqueued in the same transaction; when one fails for good the chain fails
        and `catch` (a job name) is enqueued once, with the chain's record as its one
        argument, on `queue`; when one is cancelled the chain is cancelled. A step may be
        a batch of jobs (workflows.BatchStep; as the first step, the id returned is None):
        made when the chain reaches it, it is the step that succeeded once it finished
        with every member succeeded, failed if one failed, else cancelled."""
        raise NotImplementedError

    def chain(self, chain_id: int) -> ChainRecord | None:
        raise NotImplementedError


# The bits of a batch's `fired`: which callbacks storage has enqueued (each at most once).
THEN_FIRED, CATCH_FIRED, FINALLY_FIRED = 1, 2, 4
