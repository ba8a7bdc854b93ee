"""Chains as applications and operators use them: create one from its steps and its catch
callback, read its record.

    q.chain(items, catch=..)  --steps: Queue._new_jobs (enqueue_many's rules)-->  NewJobs
                              --available_at - now: each step's delay-->           steps
                              --catch: a registered job, checked served-->         its name
                              --storage.create_chain: one transaction-->           ChainHandle

Storage does the rest (runtime.storage.base: create_chain): the first step is enqueued
with the chain, and each later one by the transaction that records the success of the
step before it; a step that fails for good fails the chain and enqueues `catch` once.
Queue's chain methods and `jobrt chain` both call here.
"""

from __future__ import annotations

from typing import NamedTuple

from runtime.errors import ChainNotFound, PayloadError
from runtime.options import QUEUE_EXPECTED, is_queue_name
from runtime.storage.workflows import BatchStep, ChainRecord
from runtime.workflow_specs import Batch, Chain, batch_step, check_callback, later_jobs


class ChainHandle(NamedTuple):
    """What q.chain() returns: the chain's id and its first step's job id (None when that
    step is a batch; the later steps get theirs when they are enqueued:
    q.chain_status(id).jobs)."""

    id: int
    first_job_id: int


def create(queue, items, catch=None, on_queue=None) -> ChainHandle:
    """A chain of `items` (as enqueue_many takes them, or a workflow_specs.Batch), run one
    after another, and its catch callback, stored with its first step in one transaction."""
    now = queue.clock()
    items = list(items)
    if not items:
        # Laravel dispatches nothing for an empty chain; a caller that built an empty list
        # by mistake would then wait for a catch or an end that never comes.
        raise PayloadError("a chain needs at least one step, got none")
    steps = []
    for index, item in enumerate(items):
        if isinstance(item, Batch):
            steps.append(batch_step(queue, item, now, f"chain item {index}"))
        elif isinstance(item, Chain):
            raise PayloadError(f"chain item {index}: a chain in a chain; give its steps in this "
                               f"chain's list instead")
        else:
            steps += later_jobs(queue, [item], now, "chain", index)
    first = steps[0]
    catch_queue = on_queue if on_queue is not None else \
        first.batch.queue if isinstance(first, BatchStep) else first.queue
    if not is_queue_name(catch_queue):
        raise PayloadError(f"chain queue= must be {QUEUE_EXPECTED}, got {catch_queue!r:.60}")
    catch_name = check_callback(queue, "catch", catch, catch_queue, of="chain")
    chain_id, first_id = queue.storage.create_chain(steps, catch_name, catch_queue, now)
    queue.storage.notify()  # its first step is there to claim
    return ChainHandle(chain_id, first_id)


def chain_id(value) -> int:
    """A chain id as given by a caller: an integer (or its text), else ChainNotFound."""
    if isinstance(value, bool):
        raise ChainNotFound(f"a chain id is an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ChainNotFound(f"a chain id is an integer, got {value!r:.60}") from None


def status(storage, value) -> ChainRecord:
    record = storage.chain(chain_id(value))
    if record is None:
        raise ChainNotFound(f"no chain with id {value} (it may never have existed, or was pruned "
                            f"with its steps)")
    return record
