"""Chains in the SQLite backend, inside its write transactions: creating one with its
first step, and moving on the chains that migration 13's trigger marked due."""

from __future__ import annotations

import sqlite3

import orjson

from runtime.storage import sqlite_insert
from runtime.storage.base import (
    CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, NewJob,
)
from runtime.storage.workflows import ChainRecord, step_spec
from runtime.storage.sqlite_counts import Tally
from runtime.storage.sqlite_file import SQL, rows


def create(conn: sqlite3.Connection, tally: Tally, steps: list[NewJob], catch, queue: str,
           now: float):
    specs = [step_spec(step) for step in steps]
    chain_id = conn.execute(SQL["insert_chain"], (queue, catch, orjson.dumps(specs).decode(),
                                                  now)).lastrowid
    jobs = [_enqueue(conn, tally, chain_id, specs[0], now)]
    conn.execute(SQL["chain_moved"], (RUNNING, None, 0, orjson.dumps(jobs).decode(), chain_id))
    return chain_id, jobs[0]


def record(row: dict) -> ChainRecord:
    return ChainRecord(id=row["id"], queue=row["queue"], state=row["state"],
                       steps=[step[1] for step in orjson.loads(row["steps"])],
                       jobs=orjson.loads(row["jobs"]), created_at=row["created_at"],
                       finished_at=row["finished_at"], catch=row["catch_job"])


def work_due(conn: sqlite3.Connection, tally: Tally, now: float) -> None:
    """The next step of each chain whose step ended, or its end (and catch, once)."""
    for row in rows(conn.execute(SQL["chains_due"])):
        specs, jobs = orjson.loads(row["steps"]), orjson.loads(row["jobs"])
        state, finished_at, fired = row["state"], row["finished_at"], row["fired"]
        found = conn.execute(SQL["job_state"], (jobs[-1],)).fetchone()
        step = found[0] if found else None
        catch = False
        if step == SUCCEEDED and len(jobs) < len(specs):
            state, finished_at = RUNNING, None
            jobs.append(_enqueue(conn, tally, row["id"], specs[len(jobs)], now))
        elif step == SUCCEEDED:
            state, finished_at = SUCCEEDED, now
        elif step in (FAILED, CANCELLED):
            state, finished_at = step, now
            catch, fired = step == FAILED and not fired and row["catch_job"] is not None, \
                fired or step == FAILED
        conn.execute(SQL["chain_moved"], (state, finished_at, 1 if fired else 0,
                                          orjson.dumps(jobs).decode(), row["id"]))
        if catch:
            payload = orjson.dumps([[record(rows(conn.execute(SQL["chain_row"], (row["id"],)))[0])
                                     .to_dict()], {}])
            conn.execute(SQL["insert_callback"], (row["queue"], row["catch_job"], payload, now, now))
            tally.add(PENDING, row["queue"], row["catch_job"], now, 1)
            tally.wake = True


def _enqueue(conn: sqlite3.Connection, tally: Tally, chain_id: int, step: list, now: float) -> int:
    queue, name, payload, priority, options, delay, overlap, rate, most, period = step
    [job_id] = sqlite_insert.insert_each(conn, tally, [(
        queue, name, payload.encode(), priority, None if options is None else options.encode(),
        now + delay, now, None, None, None, 0, None, overlap, rate, most, period)])
    conn.execute(SQL["chain_step"], (chain_id, job_id))
    tally.wake = True
    return job_id


class SqliteChainVerbs:
    """The chain verbs of SqliteStorage (mixed in; they use its _write and _cursor)."""

    def create_chain(self, steps: list[NewJob], catch, queue: str, now: float):
        return self._write("creating a chain", create, steps, catch, queue, now)

    def chain(self, chain_id: int):
        found = rows(self._cursor(f"reading chain {chain_id}", SQL["chain_row"], (chain_id,)))
        return record(found[0]) if found else None
