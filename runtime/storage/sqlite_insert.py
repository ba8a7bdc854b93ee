"""Inserting jobs into the SQLite backend, inside its write transaction: plain jobs in
bulk, and one by one those with a unique key or gates."""

from __future__ import annotations

import sqlite3

import orjson

from runtime.storage import sqlite_gates
from runtime.storage.base import PENDING
from runtime.storage.sqlite_counts import Tally
from runtime.storage.sqlite_file import SQL


def bulk_rows(jobs: list, now: float) -> list[tuple]:
    """insert_bulk's rows: (queue, name, payload, priority, options, available_at, batch_id,
    created_at) of jobs with no unique key nor gates, payload and options as text (the JSON
    document insert_jobs reads)."""
    return [(j.queue, j.name, j.payload.decode(), j.priority,
             None if j.options is None else j.options.decode(), j.available_at, j.batch_id, now)
            for j in jobs]


def insert_bulk(conn: sqlite3.Connection, tally: Tally, rows: list[tuple]) -> list[int]:
    """Rows of bulk_rows."""
    # Inside BEGIN IMMEDIATE nobody else inserts, and AUTOINCREMENT ids only
    # grow, so the rows above the old maximum are ours, in insertion order.
    before = conn.execute(SQL["max_id"]).fetchone()[0]
    conn.execute(SQL["insert_jobs"], (orjson.dumps(rows),))
    ids = [row[0] for row in conn.execute(SQL["ids_after"], (before,))]
    assert len(ids) == len(rows), "concurrent insert inside a write transaction"
    tally.add_all(PENDING, [(row[0], row[1], row[5]) for row in rows], 1)
    return ids


def insert_each(conn: sqlite3.Connection, tally: Tally, rows: list[tuple]) -> list[int]:
    """Rows of insert_gated: a job whose unique key a live job holds is that job; a job
    with gates goes in through them when nothing else is there, else held back until
    recompute finds whose turn it is."""
    ids = []
    for row in rows:
        key = row[7]
        if key is not None:
            conn.execute(SQL["expire_unique"], (key, row[6]))  # row[6]: now
            hit = conn.execute(SQL["find_unique"], (key,)).fetchone()
            if hit:
                ids.append(hit[0])
                continue
        tally.add(PENDING, row[0], row[1], row[5], 1)
        if row[12] is None and row[13] is None:
            ids.append(conn.execute(SQL["insert_job"], row[:12]).lastrowid)
            continue
        job_id = conn.execute(SQL["insert_gated"], row).lastrowid
        ids.append(job_id)
        if conn.execute(SQL["job_blocked"], (job_id,)).fetchone()[0]:
            # another job is at one of its gates: whose turn is it?
            sqlite_gates.recompute(conn, (row[12],), (row[13],), row[6])
    return ids
