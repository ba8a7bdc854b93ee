"""Inserting jobs into the SQLite backend, inside its write transaction: plain jobs in
bulk, and one by one those with a unique key or gates."""

from __future__ import annotations

import sqlite3

from runtime.storage import sqlite_gates
from runtime.storage.base import PENDING
from runtime.storage.sqlite_counts import Tally
from runtime.storage.sqlite_file import SQL


def insert_bulk(conn: sqlite3.Connection, tally: Tally, rows: list[tuple]) -> list[int]:
    # Inside BEGIN IMMEDIATE nobody else inserts, and AUTOINCREMENT ids only
    # grow, so the rows above the old maximum are ours, in insertion order.
    before = conn.execute(SQL["max_id"]).fetchone()[0]
    conn.executemany(SQL["insert_job"], rows)
    ids = [row[0] for row in conn.execute(SQL["ids_after"], (before,))]
    assert len(ids) == len(rows), "concurrent insert inside a write transaction"
    tally.add_all(PENDING, [(row[0], row[1], row[5]) for row in rows], 1)
    return ids


def insert_each(conn: sqlite3.Connection, tally: Tally, rows: list[tuple]) -> list[int]:
    """Rows of insert_gated: a job whose unique key a live job holds is that job; a job
    with gates goes in held back, then through them if it is its turn."""
    ids = []
    for row in rows:
        key = row[7]
        if key is not None:
            conn.execute(SQL["expire_unique"], (key, row[6]))  # row[6]: now
            hit = conn.execute(SQL["find_unique"], (key,)).fetchone()
            if hit:
                ids.append(hit[0])
                continue
        ids.append(conn.execute(SQL["insert_gated"], row).lastrowid)
        tally.add(PENDING, row[0], row[1], row[5], 1)
        if row[12] is not None or row[13] is not None:
            sqlite_gates.recompute(conn, (row[12],), (row[13],), row[6])
    return ids
