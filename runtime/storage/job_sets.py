"""Verbs over a set of jobs named by id: how many are in each state, and deleting them.

For a caller that made these jobs itself and must account for exactly them, whatever else
the queue holds: `jobrt bench` waits for its jobs to end, then removes them, and removes
them too when interrupted. One primary-key probe per id, so the size of the table does not
matter; callers pass their ids in chunks (JOB_SET_CHUNK) to keep each statement short.
"""

from __future__ import annotations

from typing import Iterable

JOB_SET_CHUNK = 10_000  # ids per call that keeps a delete's write lock short


def unique_ids(job_ids: Iterable[int]) -> list[int]:
    """The ids once each, in ascending order (a delete walks the rows in id order)."""
    return sorted({int(i) for i in job_ids})


class JobSetVerbs:
    """The storage contract's job-set verbs (runtime.storage.base.Storage has them)."""

    def count_states(self, job_ids: Iterable[int]) -> dict[str, int]:
        """How many of the jobs `job_ids` are in each state: state -> count, for the states
        at least one of them is in. An id of no job (never made, or deleted) is not
        counted; an id given twice counts once."""
        raise NotImplementedError

    def delete_jobs(self, job_ids: Iterable[int], now: float | None = None) -> int:
        """Delete those of the jobs `job_ids` that are not running, in one transaction;
        return how many. Pending ones go as `clear` deletes them (the next job of their
        gates gets its turn, a batch whose last members they were finishes, dated `now`,
        default the clock); ended ones as `prune` deletes them. Running jobs are left to
        finish: delete them once they ended. An id of no job is skipped."""
        raise NotImplementedError
