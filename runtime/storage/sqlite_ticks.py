"""Schedule ticks in the SQLite backend (migration 15): the tick's row and its job in one
BEGIN IMMEDIATE transaction, which also serializes the ticks of every schedule."""

from __future__ import annotations

import sqlite3

from runtime.storage import sqlite_insert, sqlite_ops
from runtime.storage.base import PENDING, RUNNING
from runtime.storage.sqlite_counts import Tally
from runtime.storage.sqlite_file import SQL
from runtime.storage.ticks import (
    ENQUEUED, MISSED, SKIPPED, TAKEN, NewTick, TickRecord, TickResult, tick_record,
)


def enqueue_ticks(conn: sqlite3.Connection, tally: Tally, ticks: list[NewTick],
                  now: float) -> list[TickResult]:
    results = []
    for tick in ticks:
        schedule, at = tick.schedule, float(tick.tick_at)
        if tick.job is None:
            outcome = MISSED
        elif tick.skip_if_running and _previous_runs(conn, schedule, at):
            outcome = SKIPPED
        else:
            outcome = ENQUEUED
        if not conn.execute(SQL["insert_tick"], (schedule, at, outcome, tick.missed, now)).rowcount:
            results.append(TickResult(TAKEN))
            continue
        job_id = None
        if outcome == ENQUEUED:
            insert = sqlite_insert.insert_each
            if tick.job.tags:
                insert = sqlite_ops.tagging(insert, [tick.job])
            (job_id,) = insert(conn, tally, sqlite_insert.each_rows([tick.job], now))
            conn.execute(SQL["tick_job"], (job_id, schedule, at))
            tally.wake = True
        results.append(TickResult(outcome, job_id))
    return results


def _previous_runs(conn: sqlite3.Connection, schedule: str, at: float) -> bool:
    row = conn.execute(SQL["tick_previous_state"], (schedule, at)).fetchone()
    return row is not None and row[0] in (PENDING, RUNNING)


class SqliteTickVerbs:
    """The tick verbs of SqliteStorage (mixed in; they use its _write and _read)."""

    def enqueue_ticks(self, ticks: list[NewTick], now: float) -> list[TickResult]:
        if not ticks:
            return []
        return self._write("enqueueing schedule ticks", enqueue_ticks, list(ticks), now)

    def last_ticks(self, schedules: list[str]) -> dict[str, TickRecord]:
        found = {}
        for name in schedules:
            rows = self._read(f"reading schedule {name!r}'s last tick", SQL["last_tick"], (name,))
            if rows:
                found[name] = tick_record(rows[0])
        return found

    def prune_ticks(self, before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        return self._write("pruning schedule ticks", lambda conn, tally: conn.execute(
            SQL["prune_ticks"], (before, limit)).rowcount)
