"""Batches as applications and operators use them: create one with its members and its
callbacks, read its record, add members, cancel it, retry its failed members.

    q.batch(items, then=..)  --members: Queue._new_jobs (enqueue_many's rules)-->  NewJobs
                             --callbacks: registered jobs, checked served-->      NewBatch
                             --storage.create_batch: one transaction-->            BatchHandle

Storage does the rest (runtime.storage.base: create_batch): the counts follow the members
in the transaction of each one's settle, and the callbacks are enqueued, once each, by the
transaction that makes them due. Queue's batch methods and `jobrt batch` both call here.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from runtime.errors import BatchFinished, BatchNotFound, PayloadError
from runtime.storage.base import NewJob
from runtime.storage.workflows import BatchRecord
from runtime.workflow_specs import Batch, Chain, chain_member, new_batch


class BatchHandle(NamedTuple):
    """What q.batch() returns: the batch's id and its members' ids, in the order given (a
    member whose unique key a live job held is that job, and is not counted as a member)."""

    id: int
    job_ids: list


def create(queue, items, name=None, on_queue=None, then=None, catch=None, finally_=None,
           allow_failures=False) -> BatchHandle:
    """A batch of `items` (as enqueue_many takes them, or a workflow_specs.Chain) and its
    callbacks, in one transaction."""
    now = queue.clock()
    jobs = members(queue, items, now, "batch")
    first = jobs[0] if jobs else None
    batch = new_batch(queue, first.queue if isinstance(first, NewJob) else
                      first.steps[0].queue if first else None,
                      name, on_queue, then, catch, finally_, allow_failures)
    batch_id, ids = queue.storage.create_batch(batch, jobs, now)
    # Members to claim, or (an empty batch) callbacks already enqueued.
    queue.storage.notify()
    return BatchHandle(batch_id, ids)


def members(queue, items, now: float, caller: str) -> list:
    """A batch's items as storage takes them: NewJobs, and a ChainMember for each Chain."""
    items = list(items)
    if not any(isinstance(item, (Batch, Chain)) for item in items):
        return queue._new_jobs(items, now, caller)
    found = []
    for index, item in enumerate(items):
        if isinstance(item, Batch):
            raise PayloadError(f"{caller} item {index}: a batch in a batch; give its jobs in this "
                               f"batch's list instead")
        if isinstance(item, Chain):
            found.append(chain_member(queue, item, now, f"{caller} item {index}"))
        else:
            found += queue._new_jobs([item], now, caller, index)
    return found


def batch_id(value) -> int:
    """A batch id as given by a caller: an integer (or its text), else BatchNotFound."""
    if isinstance(value, bool):
        raise BatchNotFound(f"a batch id is an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BatchNotFound(f"a batch id is an integer, got {value!r:.60}") from None


def _unknown(value) -> BatchNotFound:
    return BatchNotFound(f"no batch with id {value} (it may never have existed, or was pruned "
                         f"with its members)")


def status(storage, value) -> BatchRecord:
    record = storage.batch(batch_id(value))
    if record is None:
        raise _unknown(value)
    return record


def add(queue, value, items) -> list[int]:
    """Add members to a batch that has not finished; their ids."""
    wanted = batch_id(value)
    now = queue.clock()
    jobs = members(queue, items, now, "batch_add")
    ids = queue.storage.batch_add(wanted, jobs, now)
    if ids is None:
        record = queue.storage.batch(wanted)
        if record is None:
            raise _unknown(value)
        raise BatchFinished(f"batch {wanted} has finished (all its members ended, its callbacks "
                            f"ran): start a new batch for more work")
    queue.storage.notify()
    return ids


def cancel(storage, value, kill: bool = False, now: float | None = None) -> bool:
    """Cancel the pending members (running ones finish, or are killed with `kill`); False if
    it had finished already. `now`: the client's clock (default: the wall clock)."""
    cancelled = storage.batch_cancel(batch_id(value), time.time() if now is None else now, kill)
    if cancelled is None:
        raise _unknown(value)
    if cancelled:
        storage.notify()  # its callbacks may be due now
    return cancelled


def retry(storage, value, now: float | None = None) -> int:
    """Put the failed members back in their queues (Laravel's queue:retry-batch); how many.
    The batch is open again until they end; callbacks that ran do not run again."""
    record = status(storage, value)
    if not record.failed_job_ids:
        return 0
    count = storage.retry_failed(list(record.failed_job_ids), time.time() if now is None else now)
    if count:
        storage.notify()
    return count
