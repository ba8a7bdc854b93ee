"""Jobs of batches, for tests and benchmarks: members that succeed, fail, wait for a file
or meet their batch's other member at a barrier, and callbacks that write down the batch
record they were given.

Callbacks get one argument, the batch's record: they append it as one JSON line to
`<the batch's name>/<then|catch|finally>.jsonl`, so a test names its batch after a
directory of its own and counts the lines (one write with O_APPEND per line: two workers,
or two supervisors, appending at once never interleave within a line).
"""

from __future__ import annotations

import os
import time

from jobs.examples import append_json
from runtime import connect, job, job_id

BARRIER_LIMIT = 20.0  # seconds a barrier member waits for its partner before it goes on alone


@job(tries=1)
def member(value=None):
    """A member that succeeds at once, with `value` as its result."""
    return value


@job(tries=1)
def failing_member(reason: str = "a member failed") -> None:
    raise RuntimeError(reason)


@job(tries=1)
def fails_until(path: str) -> str:
    """Fails while `path` does not exist: a member that a retry of the batch can fix."""
    if not os.path.exists(path):
        raise RuntimeError(f"{path} does not exist yet")
    return "fixed"


@job(tries=1, timeout=60)
def waits_for(path: str, limit: float = 30.0) -> bool:
    """Runs until `path` exists (or `limit` seconds passed): a member that stays running."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.path.exists(path)


@job(tries=1)
def adds_to_batch(config: str, value) -> int:
    """Adds a member to its own batch while it runs (Laravel's $this->batch()->add()); its
    batch is read from its job's record (the batch id is not in the worker's job context)."""
    with connect(config=config) as q:
        batch = int(q.status(job_id()).batch_id)
        return q.batch_add(batch, [("jobs.batch_examples:member", (value,))])[0]


@job(tries=1, timeout=60)
def barrier(directory: str, key: str, side: int) -> float:
    """One of a batch's two members meeting at a barrier: it marks its start with a file,
    then waits until its partner's file exists, so both end within a poll of each other
    (on different supervisors when their queues are served by different ones). Goes on
    alone after BARRIER_LIMIT seconds, so a partner that was never started cannot hang it.
    Returns when it left."""
    mine = os.path.join(directory, f"{key}.{side}")
    theirs = os.path.join(directory, f"{key}.{1 - side}")
    with open(mine, "w"):
        pass
    deadline = time.monotonic() + BARRIER_LIMIT
    while not os.path.exists(theirs) and time.monotonic() < deadline:
        time.sleep(0.0005)
    return time.time()


@job(tries=1)
def then_note(record: dict) -> None:
    append_json(os.path.join(record["name"], "then.jsonl"), record)


@job(tries=1)
def catch_note(record: dict) -> None:
    append_json(os.path.join(record["name"], "catch.jsonl"), record)


@job(tries=1)
def finally_note(record: dict) -> None:
    append_json(os.path.join(record["name"], "finally.jsonl"), record)
