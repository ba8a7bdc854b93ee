"""How a chain moves on when its current step ended: one rule for the memory and SQLite
backends (the PostgreSQL backend's jobrt_chain_due says the same in PL/pgSQL).

A step's outcome is its job's state, or for a batch step workflows.step_outcome. Then:

    succeeded, steps left    enqueue the next one (the chain runs, again after a retry)
    succeeded, none left     the chain succeeded
    failed / cancelled       the chain stopped in that state; catch once, on the first failure

A chain that is a batch's member also keeps that batch's counts whole: the steps it will
never run count as cancelled members while it is stopped (taken back if a retried step
lets it go on), and it stops, cancelled, instead of going on once the batch was cancelled.
"""

from __future__ import annotations

from typing import NamedTuple

from runtime.storage.base import CANCELLED, FAILED, RUNNING, SUCCEEDED


class Move(NamedTuple):
    state: str
    finished: bool  # finished_at: now, else None
    enqueue_next: bool
    catch: bool  # enqueue the catch callback
    fired: bool  # catch has been due once (it never runs twice)
    cancelled: int  # steps to add to (negative: take from) its batch's cancelled count


def move(state: str, fired: bool, has_catch: bool, outcome: str | None, enqueued: int,
         steps: int, member: bool, batch_cancelled: bool) -> Move | None:
    """What a chain in `state`, with `enqueued` of its `steps` enqueued, does now that its
    last one is in `outcome` (None while it runs: nothing to do); `member`: it is a batch's
    member, that batch cancelled if `batch_cancelled`."""
    stopped = state in (FAILED, CANCELLED) and member
    left = steps - enqueued
    if outcome == SUCCEEDED and left:
        if not batch_cancelled:
            return Move(RUNNING, False, True, False, fired, -left if stopped else 0)
        outcome = CANCELLED
    if outcome == SUCCEEDED:
        return Move(SUCCEEDED, True, False, False, fired, 0)
    if outcome in (FAILED, CANCELLED):
        catch = outcome == FAILED and not fired and has_catch
        return Move(outcome, True, False, catch, fired or outcome == FAILED,
                    0 if stopped or not member else left)
    return None
