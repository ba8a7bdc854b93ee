"""Batches in the SQLite backend, inside its write transactions: creating one with its
members, adding members, cancelling, and enqueueing the callbacks of the batches that the
triggers of migration 12 marked due (by runtime.storage.batch_rules)."""

from __future__ import annotations

import sqlite3

from runtime.storage import batch_rules, sqlite_chains, sqlite_gates, sqlite_insert
from runtime.storage.base import CANCELLED, PENDING
from runtime.storage.workflows import ChainMember, NewBatch, batch_record
from runtime.storage.sqlite_counts import Tally
from runtime.storage.sqlite_file import SQL, rows
from runtime.storage.sqlite_ops import write_tags


def create(conn: sqlite3.Connection, tally: Tally, batch: NewBatch, members: list,
           now: float):
    batch_id = conn.execute(SQL["insert_batch"], (
        batch.name, batch.queue, batch.then, batch.catch, batch.finally_,
        1 if batch.allow_failures else 0, now, None)).lastrowid
    ids = add(conn, tally, batch_id, members, now)
    return batch_id, ids


def add(conn: sqlite3.Connection, tally: Tally, batch_id: int, members: list,
        now: float) -> list[int]:
    """Insert members in order: jobs (NewJobs, batch_id set here, with their tags) and
    chains (ChainMember: its first step's id), and count the new ones (a job whose unique
    key a live job held is not made, so not a member; a chain counts each of its steps)."""
    ids, made, start = [], 0, 0
    for end in range(len(members) + 1):
        if end < len(members) and not isinstance(members[end], ChainMember):
            continue
        if start < end:  # the jobs since the last chain, in one go
            jobs = [job._replace(batch_id=str(batch_id)) for job in members[start:end]]
            before = conn.execute(SQL["max_id"]).fetchone()[0]
            ids += (found := sqlite_insert.insert_each(conn, tally, sqlite_insert.each_rows(jobs, now)))
            made += len({i for i in found if i > before})
            write_tags(conn, found, jobs, before)
        if end < len(members):
            chain = members[end]
            made += len(chain.steps)
            ids.append(sqlite_chains.create(conn, tally, chain.steps, chain.catch, chain.queue,
                                            now, batch_id)[1])
        start = end + 1
    conn.execute(SQL["batch_grew"], (made, batch_id))
    work_due(conn, tally, now)
    return ids


def is_open(conn: sqlite3.Connection, batch_id: int) -> bool:
    return conn.execute(SQL["batch_open"], (batch_id,)).fetchone() is not None


def cancel(conn: sqlite3.Connection, tally: Tally, batch_id: int, now: float,
           kill: bool = False) -> None:
    conn.execute(SQL["batch_cancelled"], (now, batch_id))
    if kill:
        conn.execute(SQL["batch_kill_members"], (now, str(batch_id)))
    _cancel_members(conn, tally, batch_id, now)
    work_due(conn, tally, now)


def record(conn: sqlite3.Connection, row: dict):
    running = conn.execute(SQL["batch_running"], (str(row["id"]),)).fetchone()[0]
    return batch_record(row, running)


def work_due(conn: sqlite3.Connection, tally: Tally, now: float) -> None:
    """Enqueue the callbacks now due of every batch marked due, in id order; then move on
    the chains marked due; again while that made or changed a batch (the order every
    backend keeps)."""
    while True:
        _batches_due(conn, tally, now)
        if not sqlite_chains.work_due(conn, tally, now):
            break


def _batches_due(conn: sqlite3.Connection, tally: Tally, now: float) -> None:
    # A cancelled batch's members back in their queues (a retry, a rescue) are cancelled.
    for (batch_id,) in conn.execute(SQL["cancelled_batches_due"]).fetchall():
        _cancel_members(conn, tally, batch_id, now, "batch_cancel_returned")
    for row in rows(conn.execute(SQL["batches_due"])):
        callbacks = []
        while True:
            step = batch_rules.step(row, now)
            callbacks += step.callbacks
            conn.execute(SQL["batch_stepped"], (step.fired, step.finished_at, step.cancelled_at,
                                                row["id"]))
            if not step.cancel_pending:
                break
            _cancel_members(conn, tally, row["id"], now)
            row = rows(conn.execute(SQL["batch_row"], (row["id"],)))[0]
        if callbacks:
            row = rows(conn.execute(SQL["batch_row"], (row["id"],)))[0]
            payload = batch_rules.callback_payload(record(conn, row))
            for name in callbacks:
                conn.execute(SQL["insert_callback"], (row["queue"], name, payload, now, now))
                tally.add(PENDING, row["queue"], name, now, 1)
            tally.wake = True


def _cancel_members(conn: sqlite3.Connection, tally: Tally, batch_id: int, now: float,
                    query: str = "batch_cancel_members") -> None:
    """Cancel the batch's pending members (batch_cancel_returned: only those back in their
    queue by a retry or a rescue, not by an operator's retry of the failed ones)."""
    jobs = conn.execute(SQL[query], (now, str(batch_id))).fetchall()
    tally.move(PENDING, CANCELLED, [job[:3] for job in jobs])
    sqlite_gates.regate(conn, [job[3:] for job in jobs], now)


class SqliteBatchVerbs:
    """The batch verbs of SqliteStorage (mixed in; they use its _write and conn)."""

    def create_batch(self, batch: NewBatch, jobs: list, now: float):
        return self._write("creating a batch", create, batch, jobs, now)

    def batch_add(self, batch_id: int, jobs: list, now: float):
        def work(conn, tally):
            if not is_open(conn, batch_id):
                return None
            return add(conn, tally, batch_id, jobs, now)
        return self._write(f"adding jobs to batch {batch_id}", work)

    def batch(self, batch_id: int):
        found = rows(self._cursor(f"reading batch {batch_id}", SQL["batch_row"], (batch_id,)))
        return record(self.conn, found[0]) if found else None

    def batches(self, limit: int = 100):
        found = rows(self._cursor("listing batches", SQL["batch_rows"], (limit,)))
        return [record(self.conn, row) for row in found]

    def batch_cancel(self, batch_id: int, now: float, kill: bool = False):
        def work(conn, tally):
            found = rows(conn.execute(SQL["batch_row"], (batch_id,)))
            if not found:
                return None
            if found[0]["finished_at"] is not None:
                return False
            cancel(conn, tally, batch_id, now, kill)
            return True
        return self._write(f"cancelling batch {batch_id}", work)
