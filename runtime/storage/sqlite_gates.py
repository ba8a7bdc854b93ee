"""The gates of the SQLite backend: which waiting job each overlap key and each rate key
lets through, kept in the `blocked` bits of the jobs (migration 10), inside the write
transaction of the change that moved them. Only jobs with gates come here.

Each key lets through at most one pending job, its first by (available_at, id): an overlap
key while no job with it runs, a rate key while its limiter has a free slot (else the key
is parked in rate_parked until one opens). A change that may alter which job that is (an
insert, a claim, a settle, a rescue, a cancel, a retry) calls `recompute` for its keys.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

from runtime.storage.sqlite_file import SQL


def recompute(conn: sqlite3.Connection, overlap_keys: Iterable, rate_keys: Iterable,
              now: float) -> None:
    """Let through the job whose turn it is at each of these keys (None ones are skipped).
    Overlap keys first: which jobs they let through decides which a rate key may."""
    rates = {key for key in rate_keys if key is not None}
    for key in sorted({key for key in overlap_keys if key is not None}):
        rates |= _overlap(conn, key)
    for key in sorted(rates):
        _rate(conn, key, now)


def regate(conn: sqlite3.Connection, pairs: Iterable, now: float) -> None:
    """Jobs that came to or left the pending ones, (overlap key, rate key) each: let through
    whichever job's turn it now is at their gates (nothing to do for jobs without)."""
    pairs = [pair for pair in pairs if pair[0] is not None or pair[1] is not None]
    if pairs:
        recompute(conn, [pair[0] for pair in pairs], [pair[1] for pair in pairs], now)


def started(conn: sqlite3.Connection, claimed: list[tuple[str, float]], now: float) -> None:
    """Jobs of rate keys just claimed, (rate key, period) each: count their starts, forget
    those that fell out of the period, and let the next job of each key through."""
    conn.executemany(SQL["rate_start"], [(key, now) for key, _ in claimed])
    conn.executemany(SQL["rate_forget"], [(key, now - period) for key, period in claimed])
    recompute(conn, (), [key for key, _ in claimed], now)


def reopen(conn: sqlite3.Connection, now: float) -> None:
    """Rate keys whose limiter has had a slot free since `now` or earlier: their turn again."""
    keys = [row[0] for row in conn.execute(SQL["rate_reopen"], (now,))]
    for key in keys:
        conn.execute(SQL["rate_unpark"], (key,))
    if keys:
        recompute(conn, (), keys, now)


def _overlap(conn: sqlite3.Connection, key: str) -> set:
    """Let the first pending job with overlap key `key` through, unless one with it runs.
    Returns the rate keys of the jobs whose overlap bit changed."""
    holder = conn.execute(SQL["overlap_holder"], (key,)).fetchone()  # id, state, rate key
    if holder is not None and holder[1] == "running":
        return set()
    first = conn.execute(SQL["overlap_first"], (key,)).fetchone()  # id, rate key
    if first is None or holder is not None and holder[0] == first[0]:
        return set()
    changed = {first[1]}
    if holder is not None:  # a job that came first meanwhile (an earlier available_at)
        conn.execute(SQL["overlap_wait"], (holder[0],))
        changed.add(holder[2])
    conn.execute(SQL["overlap_go"], (first[0],))
    return changed - {None}


def _rate(conn: sqlite3.Connection, key: str, now: float) -> None:
    """Let the first pending job of rate key `key` that its overlap key lets through go,
    if its limiter has a free slot at `now`; else park the key until one opens."""
    head = conn.execute(SQL["rate_head"], (key,)).fetchone()
    first = conn.execute(SQL["rate_first"], (key,)).fetchone()  # id, queue, max, period
    if first is None:
        conn.execute(SQL["rate_unpark"], (key,))  # nothing waits: nothing to wake for
        return
    if head is not None:
        if head[0] == first[0]:
            return
        conn.execute(SQL["rate_wait"], (head[0],))  # one that came first meanwhile
    job_id, queue, most, period = first
    full_since = conn.execute(SQL["rate_full_since"], (key, now - period, most)).fetchone()
    if full_since is None:
        conn.execute(SQL["rate_go"], (job_id,))
        conn.execute(SQL["rate_unpark"], (key,))
    else:
        conn.execute(SQL["rate_park"], (key, queue, full_since[0] + period))
