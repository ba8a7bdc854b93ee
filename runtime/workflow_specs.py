"""Workflows nested in workflows, as Laravel's Bus::chain and Bus::batch nest them:

    q.chain([(fetch, (url,)), Batch([(resize, (p,)) for p in paths], then=done), (store, ())])
    q.batch([(a, ()), Chain([(b, ()), (c, ())], catch=chain_failed)], then=all_done)

A Batch as a chain's step is made when the chain reaches it (its members' _delay counts
from then), and the chain goes on once every member succeeded. A Chain as a batch's member
counts each of its steps as a member. Nesting goes one level deep: a nested batch holds
jobs, a nested chain holds jobs.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

from runtime.errors import PayloadError
from runtime.options import QUEUE_EXPECTED, is_queue_name
from runtime.storage.workflows import BatchStep, ChainMember, NewBatch

MAX_NAME = 200  # characters of a batch's name: a label for lists, not a document


class Batch(NamedTuple):
    """A batch as a step of q.chain(); the arguments are q.batch()'s."""

    items: list
    name: str | None = None
    queue: str | None = None
    then: object = None
    catch: object = None
    finally_: object = None
    allow_failures: bool = False


class Chain(NamedTuple):
    """A chain as a member of q.batch() or q.batch_add(); the arguments are q.chain()'s."""

    items: list
    catch: object = None
    queue: str | None = None


def new_batch(queue, first_queue: str | None, name=None, on_queue=None, then=None, catch=None,
              finally_=None, allow_failures=False) -> NewBatch:
    """A batch's name and callbacks, checked: its callbacks run on `on_queue`, else where the
    work runs (`first_queue`, its first member's), else on "default"."""
    if name is not None and not (isinstance(name, str) and 0 < len(name) <= MAX_NAME
                                 and name.isprintable()):
        raise PayloadError(f"batch name must be printable text of 1 to {MAX_NAME} characters, "
                           f"got {name!r:.60}")
    callback_queue = on_queue if on_queue is not None else first_queue or "default"
    if not is_queue_name(callback_queue):
        raise PayloadError(f"batch queue= must be {QUEUE_EXPECTED}, got {callback_queue!r:.60}")
    names = [check_callback(queue, role, target, callback_queue)
             for role, target in (("then", then), ("catch", catch), ("finally_", finally_))]
    return NewBatch(callback_queue, name, *names, allow_failures=bool(allow_failures))


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


def later_jobs(queue, items, now: float, caller: str, first: int = 0) -> list:
    """Items (as enqueue_many takes them) that storage enqueues later, when their chain
    reaches them: NewJobs whose available_at is their delay, none unique."""
    jobs = queue._new_jobs(items, now, caller, first)
    for index, job in enumerate(jobs, first):
        if job.unique_key is not None:
            # Enqueued long after the call returned: a live job holding its key then would
            # have to be skipped or stall the chain, so neither is offered.
            raise PayloadError(f"{caller} item {index} ({job.name}): a job enqueued when its chain "
                               f"reaches it cannot be unique (its key is checked then); pass "
                               f"_unique=False in its options")
    return [job._replace(available_at=max(0.0, job.available_at - now)) for job in jobs]


def chain_member(queue, spec: Chain, now: float, where: str) -> ChainMember:
    """A Chain given as a batch's member (`where` names it in errors)."""
    items = list(spec.items)
    if not items:
        raise PayloadError(f"{where}: a chain needs at least one step, got none")
    if any(isinstance(item, (Batch, Chain)) for item in items):
        raise PayloadError(f"{where}: a chain inside a batch holds jobs only (workflows nest one "
                           f"level deep)")
    steps = later_jobs(queue, items, now, f"{where}: chain")
    catch_queue = spec.queue if spec.queue is not None else steps[0].queue
    if not is_queue_name(catch_queue):
        raise PayloadError(f"{where}: chain queue= must be {QUEUE_EXPECTED}, got {catch_queue!r:.60}")
    return ChainMember(steps, check_callback(queue, "catch", spec.catch, catch_queue, of="chain"),
                       catch_queue)


def batch_step(queue, spec: Batch, now: float, where: str) -> BatchStep:
    """A Batch given as a chain's step (`where` names it in errors)."""
    items = list(spec.items)
    if any(isinstance(item, (Batch, Chain)) for item in items):
        raise PayloadError(f"{where}: a batch inside a chain holds jobs only (workflows nest one "
                           f"level deep)")
    members = later_jobs(queue, items, now, f"{where}: batch")
    batch = new_batch(queue, members[0].queue if members else None, spec.name, spec.queue,
                      spec.then, spec.catch, spec.finally_, spec.allow_failures)
    return BatchStep(batch, members)
