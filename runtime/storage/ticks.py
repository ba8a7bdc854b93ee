"""The records of schedule ticks that storage keeps (see Storage.enqueue_ticks): what a
supervisor asks to write for one tick, what came of it, and a tick row as read back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # base imports this module, for TickVerbs
    from runtime.storage.base import NewJob

ENQUEUED = "enqueued"  # the tick's row is this call's, and its job was enqueued with it
SKIPPED = "skipped"  # ... but the schedule's previous job was still pending or running
MISSED = "missed"  # ... recording ticks that did not run (catch-up); no job
TAKEN = "taken"  # the tick had a row already (another supervisor's): nothing written
OUTCOMES = (ENQUEUED, SKIPPED, MISSED)  # what a row holds


class NewTick(NamedTuple):
    """One tick to record. `job` None records missed ticks (`missed` of them, this one
    the newest); with `skip_if_running` (overlap = "skip") the job is not enqueued while
    the job of the schedule's latest earlier tick that has one is pending or running.
    `missed`: how many ticks before this one did not run and are counted with it."""

    schedule: str
    tick_at: float
    job: NewJob | None
    skip_if_running: bool = False
    missed: int = 0


class TickResult(NamedTuple):
    outcome: str  # ENQUEUED, SKIPPED, MISSED or TAKEN
    job_id: int | None = None


@dataclass
class TickRecord:
    """A tick row, with the state of its job (None: no job, or pruned since)."""

    schedule: str
    tick_at: float
    outcome: str
    job_id: int | None
    missed: int
    created_at: float
    job_state: str | None = None

    def to_dict(self) -> dict:
        return {"schedule": self.schedule, "tick_at": self.tick_at, "outcome": self.outcome,
                "job_id": self.job_id, "job_state": self.job_state, "missed": self.missed,
                "created_at": self.created_at}


def tick_record(row) -> TickRecord:
    """A TickRecord from (schedule, tick_at, outcome, job_id, missed, created_at, job_state)."""
    return TickRecord(*row)


class TickVerbs:
    """The storage contract's tick verbs (runtime.storage.base.Storage has them)."""

    # -- schedule ticks (runtime.storage.ticks) ----------------------------------
    def enqueue_ticks(self, ticks: list, now: float) -> list:
        """Record schedule ticks (NewTick) in one transaction, in order; a TickResult each.

        A tick is a row unique on (schedule, tick_at), inserted ON CONFLICT DO NOTHING, so
        of the supervisors that all compute it exactly one writes it: the others get TAKEN
        and write nothing. The writer enqueues the tick's job in the same transaction
        (ENQUEUED, with its id, as enqueue() would: a unique key held returns the holder),
        unless `skip_if_running` and the job of the schedule's latest earlier tick that
        has one is pending or running (SKIPPED), or the tick has no job (MISSED). `missed`
        is kept on the row. Ticks of one schedule are serialized across callers (SQLite's
        write lock; PostgreSQL: a lock per schedule), so a skip sees the previous tick."""
        raise NotImplementedError

    def last_ticks(self, schedules: list[str]) -> dict:
        """The newest tick row (TickRecord, with its job's state) of each of `schedules`
        that has any; one index probe each."""
        raise NotImplementedError

    def prune_ticks(self, before: float, limit: int) -> int:
        """Delete up to `limit` tick rows with tick_at earlier than `before`, oldest first,
        keeping each schedule's newest row and its newest row with a job (catch-up and
        overlap read them); return how many. Call again while the return equals `limit`."""
        raise NotImplementedError
