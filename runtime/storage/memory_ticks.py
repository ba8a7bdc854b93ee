"""Schedule ticks in the in-memory backend (the model): a dict keyed by (schedule, tick_at)."""

from __future__ import annotations

from runtime.storage.base import PENDING, RUNNING
from runtime.storage.ticks import (
    ENQUEUED, MISSED, SKIPPED, TAKEN, NewTick, TickRecord, TickResult,
)


class MemoryTicks:
    """Mixed into MemoryStorage, whose `jobs` and `enqueue` it uses."""

    def _ticks_init(self) -> None:
        self.tick_rows: dict[tuple[str, float], dict] = {}

    def enqueue_ticks(self, ticks: list[NewTick], now: float) -> list[TickResult]:
        results = []
        for tick in ticks:
            key = (tick.schedule, float(tick.tick_at))
            if key in self.tick_rows:
                results.append(TickResult(TAKEN))
                continue
            job_id = None
            if tick.job is None:
                outcome = MISSED
            elif tick.skip_if_running and self._previous_runs(tick.schedule, tick.tick_at):
                outcome = SKIPPED
            else:
                outcome, job_id = ENQUEUED, self.enqueue([tick.job])[0]
            self.tick_rows[key] = dict(schedule=tick.schedule, tick_at=float(tick.tick_at),
                                       outcome=outcome, job_id=job_id, missed=tick.missed,
                                       created_at=now)
            results.append(TickResult(outcome, job_id))
        return results

    def _previous_runs(self, schedule: str, tick_at: float) -> bool:
        """The job of the schedule's latest tick before `tick_at` that has one is live."""
        earlier = [row for (name, at), row in self.tick_rows.items()
                   if name == schedule and at < tick_at and row["job_id"] is not None]
        if not earlier:
            return False
        job = self.jobs.get(max(earlier, key=lambda row: row["tick_at"])["job_id"])
        return job is not None and job["state"] in (PENDING, RUNNING)

    def last_ticks(self, schedules: list[str]) -> dict[str, TickRecord]:
        found = {}
        for name in schedules:
            rows = [row for (schedule, _), row in self.tick_rows.items() if schedule == name]
            if rows:
                row = max(rows, key=lambda r: r["tick_at"])
                job = self.jobs.get(row["job_id"]) if row["job_id"] is not None else None
                found[name] = TickRecord(**row, job_state=job["state"] if job else None)
        return found

    def prune_ticks(self, before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        doomed = sorted((key for key, row in self.tick_rows.items()
                         if key[1] < before and self._superseded(row)),
                        key=lambda key: (key[1], key[0]))[:limit]
        for key in doomed:
            del self.tick_rows[key]
        return len(doomed)

    def _superseded(self, row: dict) -> bool:
        """A newer row of its schedule with a job, or (a row without one) any newer row."""
        newer = [r for (name, at), r in self.tick_rows.items()
                 if name == row["schedule"] and at > row["tick_at"]]
        return any(r["job_id"] is not None for r in newer) or (row["job_id"] is None and bool(newer))
