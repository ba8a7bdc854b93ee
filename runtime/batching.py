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

import inspect
import time
from typing import NamedTuple

from runtime.errors import BatchFinished, BatchNotFound, PayloadError
from runtime.options import QUEUE_EXPECTED, is_queue_name
from runtime.storage.base import BatchRecord, NewBatch

MAX_NAME = 200  # characters of a batch's name: a label for lists, not a document


class BatchHandle(NamedTuple):
    """What q.batch() returns: the batch's id and its members' ids, in the order given (a
    member whose unique key a live job held is that job, and is not counted as a member)."""

    id: int
    job_ids: list


def create(queue, items, name=None, on_queue=None, then=None, catch=None, finally_=None,
           allow_failures=False) -> BatchHandle:
    """A batch of `items` (as enqueue_many takes them) and its callbacks, in one transaction."""
    now = time.time()
    jobs = queue._new_jobs(items, now, "batch")
    if name is not None and not (isinstance(name, str) and 0 < len(name) <= MAX_NAME
                                 and name.isprintable()):
        raise PayloadError(f"batch name must be printable text of 1 to {MAX_NAME} characters, "
                           f"got {name!r:.60}")
    # Callbacks run where the work runs unless told otherwise: the first member's queue.
    callback_queue = on_queue if on_queue is not None else jobs[0].queue if jobs else "default"
    if not is_queue_name(callback_queue):
        raise PayloadError(f"batch queue= must be {QUEUE_EXPECTED}, got {callback_queue!r:.60}")
    names = [check_callback(queue, role, target, callback_queue)
             for role, target in (("then", then), ("catch", catch), ("finally_", finally_))]
    batch = NewBatch(callback_queue, name, *names, allow_failures=bool(allow_failures))
    batch_id, ids = queue.storage.create_batch(batch, jobs, now)
    # Members to claim, or (an empty batch) callbacks already enqueued.
    queue.storage.notify()
    return BatchHandle(batch_id, ids)


def check_callback(queue, role: str, target, callback_queue: str, of: str = "batch") -> str | None:
    """The job name of a callback (`role` of a batch or, `of`="chain", a chain) given as a
    function or a name, refused here, where the caller can fix it, if it is no registered
    job, no worker of the config would run it on `callback_queue`, or it cannot take the
    record of its batch or chain as its one argument."""
    if target is None:
        return None
    spec = queue._spec(target)
    queue._check_served(spec, callback_queue)
    try:
        inspect.signature(spec.func).bind({})
    except TypeError as exc:
        raise PayloadError(f"{of} {role}={spec.name}: a callback is called with the {of}'s "
                           f"record as its one argument, and this job cannot take it ({exc})") from None
    except ValueError:  # no signature to read (a builtin): let it be tried
        pass
    return spec.name


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
    now = time.time()
    jobs = queue._new_jobs(items, now, "batch_add")
    ids = queue.storage.batch_add(wanted, jobs, now)
    if ids is None:
        record = queue.storage.batch(wanted)
        if record is None:
            raise _unknown(value)
        raise BatchFinished(f"batch {wanted} has finished (all its members ended, its callbacks "
                            f"ran): start a new batch for more work")
    queue.storage.notify()
    return ids


def cancel(storage, value) -> bool:
    """Cancel the pending members (running ones finish); False if it had finished already."""
    cancelled = storage.batch_cancel(batch_id(value), time.time())
    if cancelled is None:
        raise _unknown(value)
    if cancelled:
        storage.notify()  # its callbacks may be due now
    return cancelled


def retry(storage, value) -> int:
    """Put the failed members back in their queues (Laravel's queue:retry-batch); how many.
    The batch is open again until they end; callbacks that ran do not run again."""
    record = status(storage, value)
    if not record.failed_job_ids:
        return 0
    count = storage.retry_failed(list(record.failed_job_ids), time.time())
    if count:
        storage.notify()
    return count
