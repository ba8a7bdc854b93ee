"""Schedule ticks in the PostgreSQL backend (migration 13): per schedule an advisory lock,
then the tick's row ON CONFLICT DO NOTHING and, if this transaction inserted it, its job."""

from __future__ import annotations

from runtime.storage import pginsert
from runtime.storage.base import PENDING, RUNNING
from runtime.storage.pgops import tagging
from runtime.storage.pgparams import check_jobs
from runtime.storage.ticks import (
    ENQUEUED, MISSED, SKIPPED, TAKEN, NewTick, TickRecord, TickResult, tick_record,
)


class PostgresTickVerbs:
    """Mixed into PostgresStorage: uses its SQL, _write, _read, channel and target."""

    def enqueue_ticks(self, ticks: list[NewTick], now: float) -> list[TickResult]:
        ticks = list(ticks)
        if not ticks:
            return []
        check_jobs([tick.job for tick in ticks if tick.job is not None], self.target.where)

        def work(conn):
            for schedule in sorted({tick.schedule for tick in ticks}):
                conn.execute(self.SQL["tick_lock"], {"schedule": schedule})
            results = [self._tick(conn, tick, now) for tick in ticks]
            return lambda: results
        # Each tick reads what the one before it wrote: the work fetches as it goes, and a
        # connection lost before COMMIT is tried again, as enqueue is (nothing was written).
        return self._write("enqueueing schedule ticks", work, confirm_first=True)

    def _tick(self, conn, tick: NewTick, now: float) -> TickResult:
        key = {"schedule": tick.schedule, "tick_at": float(tick.tick_at)}
        if tick.job is None:
            outcome = MISSED
        elif tick.skip_if_running and _previous_runs(conn, self.SQL, key):
            outcome = SKIPPED
        else:
            outcome = ENQUEUED
        won = conn.execute(self.SQL["insert_tick"], {**key, "outcome": outcome,
                                                     "missed": tick.missed, "now": now}).fetchone()
        if won is None:
            return TickResult(TAKEN)
        if outcome != ENQUEUED:
            return TickResult(outcome)
        insert = pginsert.insert_unique if tick.job.unique_key is not None else pginsert.insert_bulk
        if tick.job.tags:
            insert = tagging(insert, [tick.job])
        (job_id,) = insert(conn, self.SQL, [tick.job], now, self.channel, self.target.where)()
        conn.execute(self.SQL["tick_job"], {**key, "job_id": job_id})
        return TickResult(ENQUEUED, job_id)

    def last_ticks(self, schedules: list[str]) -> dict[str, TickRecord]:
        found = {}
        for name in schedules:
            rows = self._read(f"reading schedule {name!r}'s last tick", self.SQL["last_tick"],
                              {"schedule": name})
            if rows:
                found[name] = tick_record(rows[0])
        return found

    def prune_ticks(self, before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        return self._change("pruning schedule ticks", "prune_ticks",
                            {"before": before, "limit": limit})


def _previous_runs(conn, sql, key: dict) -> bool:
    row = conn.execute(sql["tick_previous_state"], key).fetchone()
    return row is not None and row[0] in (PENDING, RUNNING)
