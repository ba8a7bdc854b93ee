"""When a batch's callbacks are due: one rule for the memory and SQLite backends (the
PostgreSQL backend's jobrt_batch_due says the same in PL/pgSQL).

A backend keeps each batch's counts in step with its members' states (in the same
transaction), marks the batch due when one of them ended or came back, and then, still in
that transaction, asks `step` what to do:

    catch    a member failed for good and catch has not run: enqueue it; and unless
             allow_failures, cancel the pending members (once: cancelled_at)
    then     every member ended and succeeded, and then has not run
    finally  every member ended, and finally has not run (after then)

finished_at is when the last member ended (None while some are pending or running again,
after a retry). Each callback runs at most once per batch, whatever happens after.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from runtime.storage.workflows import CATCH_FIRED, FINALLY_FIRED, THEN_FIRED, BatchRecord


class Step(NamedTuple):
    cancel_pending: bool  # cancel the pending members first, then read the counts again
    callbacks: list  # job names, in the order to enqueue them
    fired: int
    finished_at: float | None
    cancelled_at: float | None


def step(row: dict, now: float) -> Step:
    """What batch `row` (a batches row: counts, fired, times, callbacks) needs now."""
    fired, callbacks = row["fired"], []
    cancel, cancelled_at = False, row["cancelled_at"]
    if row["failed"] > 0 and not fired & CATCH_FIRED:
        fired |= CATCH_FIRED
        if row["catch_job"]:
            callbacks.append(row["catch_job"])
        if not row["allow_failures"] and cancelled_at is None:
            cancel, cancelled_at = True, now
    ended = row["succeeded"] + row["failed"] + row["cancelled"]
    finished = not cancel and ended >= row["total"]
    finished_at = (row["finished_at"] or now) if finished else None
    if finished and row["failed"] == 0 and row["cancelled"] == 0 and not fired & THEN_FIRED:
        fired |= THEN_FIRED
        if row["then_job"]:
            callbacks.append(row["then_job"])
    if finished and not fired & FINALLY_FIRED:
        fired |= FINALLY_FIRED
        if row["finally_job"]:
            callbacks.append(row["finally_job"])
    return Step(cancel, callbacks, fired, finished_at, cancelled_at)


def callback_payload(record: BatchRecord) -> bytes:
    """A callback job's payload: the batch's record, its one argument."""
    return orjson.dumps([[record.to_dict()], {}])
