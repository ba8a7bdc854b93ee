"""Jobs of chains, for tests and examples: steps that note when they ran, fail or wait for a
file, and a catch callback that writes down the chain record it was given.

A step appends {"index", "job_id", "started", "ended"} as one JSON line to
`<directory>/steps.jsonl`, so a test sees which steps ran, and in what order. The catch
gets one argument, the chain's record, and nothing else that says where to write: it
appends it to `$CHAIN_NOTES/catch.jsonl` (the supervisor's directory if unset), so a test
starts its supervisor with CHAIN_NOTES naming a directory of its own. One write with
O_APPEND per line: two workers appending at once never interleave within a line.
"""

from __future__ import annotations

import os
import time

from jobs.examples import append_json
from runtime import current_batch, job, job_id, previous_result


def _note(directory: str, index: int, started: float) -> None:
    append_json(os.path.join(directory, "steps.jsonl"),
                {"index": index, "job_id": job_id(), "started": started, "ended": time.time()})


@job(tries=1)
def step(directory: str, index: int) -> int:
    """A step that succeeds, noting when it started and ended; returns its index."""
    started = time.time()
    _note(directory, index, started)
    return index


@job(tries=1)
def failing_step(directory: str, index: int) -> None:
    """A step that notes it ran, then fails for good (one try)."""
    _note(directory, index, time.time())
    raise RuntimeError(f"step {index} failed")


@job(tries=1, timeout=60)
def waiting_step(directory: str, index: int, path: str, limit: float = 30.0) -> bool:
    """A step that runs until `path` exists (or `limit` seconds passed): one that stays
    running, to be cancelled."""
    started = time.time()
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    _note(directory, index, started)
    return os.path.exists(path)


@job(tries=1)
def catch_note(record: dict) -> None:
    """A chain's catch: appends the record it got to $CHAIN_NOTES/catch.jsonl."""
    append_json(os.path.join(os.environ.get("CHAIN_NOTES", "."), "catch.jsonl"), record)


@job(tries=1)
def context_note(directory: str, label: str) -> str:
    """A step or member that appends what it learns of its workflow to
    `<directory>/context.jsonl` (its label, batch record and the previous step's result,
    and when it started and ended); returns its label, the next step's previous_result()."""
    started = time.time()
    batch = current_batch()
    append_json(os.path.join(directory, "context.jsonl"), {
        "label": label, "job_id": job_id(), "batch": batch and batch.to_dict(),
        "previous": previous_result(), "started": started, "ended": time.time()})
    return label
