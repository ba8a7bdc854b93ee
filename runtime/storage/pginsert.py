"""Enqueueing on PostgreSQL: the statements of an enqueue's transaction, for a batch
without unique keys (one insert, and with gates the turns where another job is at one)
and one with them (a few statements whatever its size); and `regate`, the turns at the
gates of jobs any verb moved, which enqueue shares with the others.
Each function queues them on a pipelined connection and returns what builds the ids."""

from __future__ import annotations

from runtime.errors import StorageError
from runtime.storage.base import NewJob
from runtime.storage.pgparams import as_bytes


def insert_bulk(conn, sql, jobs, now, channel, where):
    """A batch without unique keys, in one insert."""
    if any(j.overlap_key is not None or j.rate_key is not None for j in jobs):
        return _insert_gated(conn, sql, jobs, now, channel)
    cursor = conn.execute(sql["insert_jobs"], {
        "now": now, "queue": [j.queue for j in jobs], "name": [j.name for j in jobs],
        "payload": [bytes(j.payload) for j in jobs],
        "priority": [int(j.priority) for j in jobs],
        "options": [as_bytes(j.options) for j in jobs],
        "available_at": [float(j.available_at) for j in jobs],
        "unique_key": [None] * len(jobs), "batch_id": [j.batch_id for j in jobs]})
    wake = conn.execute(sql["wake"], {"channel": channel})

    def ids() -> list[int]:
        wake.fetchall()
        # Identity values rise in insertion order, which is batch order.
        return sorted(row[0] for row in cursor.fetchall())
    return ids


def _insert_gated(conn, sql, jobs, now, channel):
    """A batch with gates, in one insert that lets each job through where nothing else is at
    its gate; then, before COMMIT (the enqueue confirms first), the turns at the gates where
    something was."""
    conn.execute(sql["gate_lock"])
    cursor = conn.execute(sql["insert_gated_jobs"], {
        "now": now, "queue": [j.queue for j in jobs], "name": [j.name for j in jobs],
        "payload": [bytes(j.payload) for j in jobs], "priority": [int(j.priority) for j in jobs],
        "options": [as_bytes(j.options) for j in jobs],
        "available_at": [float(j.available_at) for j in jobs],
        "batch_id": [j.batch_id for j in jobs], **_gate_columns(jobs)})
    wake = conn.execute(sql["wake"], {"channel": channel})

    def ids() -> list[int]:
        wake.fetchall()
        rows = cursor.fetchall()
        held = [row for row in rows if row[1]]
        turns = regate(conn, sql, [row[2] for row in held], [row[3] for row in held], now,
                       channel)
        if turns is not None:
            turns.fetchall()
        return sorted(row[0] for row in rows)  # identity values rise in batch order
    return ids


def insert_unique(conn, sql, jobs, now, channel, where):
    """A batch with unique keys, in a few statements whatever its size: keys past their
    unique_for freed, the live holders of the others looked up, then one insert, in
    batch order, of the jobs without keys and the first job with each new key. A
    duplicate returns its holder's id and uses no new id. A key another client takes
    meanwhile is resolved one job at a time."""
    if any(j.unique_expires is not None and j.unique_expires <= now for j in jobs):
        # A key out of date as it is made (unique_for is > 0, so only by hand): one job
        # at a time, so a later job of the batch with its key finds it free.
        ids = [_insert_one(conn, sql, j, now, where) for j in jobs]
        regate(conn, sql, [j.overlap_key for j in jobs], [j.rate_key for j in jobs], now, channel)
        wake = conn.execute(sql["wake"], {"channel": channel})
        return lambda: (wake.fetchall(), ids)[1]
    keys = list({j.unique_key for j in jobs if j.unique_key is not None})
    conn.execute(sql["expire_unique_keys"], {"keys": keys, "now": now})
    held = dict(conn.execute(sql["live_unique_keys"], {"keys": keys}).fetchall())
    seen, new = set(held), []
    for j in jobs:  # in batch order: those without a key, the first with each new key
        if j.unique_key is None or j.unique_key not in seen:
            seen.add(j.unique_key)
            new.append(j)
    fresh: list[int] = []
    if new:
        for key, job_id in conn.execute(sql["insert_keyed"], {
            "now": now, **{f: [getattr(j, f) for j in new]
                           for f in ("queue", "name", "unique_key", "batch_id")},
            "payload": [bytes(j.payload) for j in new], "priority": [int(j.priority) for j in new],
            "options": [as_bytes(j.options) for j in new],
            "available_at": [float(j.available_at) for j in new],
            "unique_expires": [None if j.unique_expires is None else float(j.unique_expires)
                               for j in new],
            "unique_at_start": [bool(j.unique_at_start) for j in new],
            **_gate_columns(new)}).fetchall():
            if key is None:
                fresh.append(job_id)
            else:
                held[key] = job_id
    fresh.sort()  # identity values rise in insertion order, which is batch order
    ids, keyless = [], iter(fresh)
    for j in jobs:
        if j.unique_key is None:
            ids.append(next(keyless))
        else:
            if j.unique_key not in held:
                held[j.unique_key] = _insert_one(conn, sql, j, now, where)
            ids.append(held[j.unique_key])
    regate(conn, sql, [j.overlap_key for j in jobs], [j.rate_key for j in jobs], now, channel)
    wake = conn.execute(sql["wake"], {"channel": channel})
    return lambda: (wake.fetchall(), ids)[1]


def _insert_one(conn, sql, j: NewJob, now: float, where: str) -> int:
    """One job whose key changed hands while its batch was inserted, or of a batch
    with a key out of date (its holder's key freed first, past unique_for)."""
    row = {"now": now, "queue": j.queue, "name": j.name, "payload": bytes(j.payload),
           "priority": int(j.priority), "available_at": float(j.available_at),
           "options": as_bytes(j.options), "unique_key": j.unique_key, "batch_id": j.batch_id,
           "unique_expires": None if j.unique_expires is None else float(j.unique_expires),
           "unique_at_start": bool(j.unique_at_start), "overlap_key": j.overlap_key,
           "rate_key": j.rate_key, "rate_max": int(j.rate_max), "rate_period": float(j.rate_period)}
    if j.unique_key is not None:
        conn.execute(sql["expire_unique"], {"key": j.unique_key, "now": now})
    for _ in range(3):  # a racing client may insert the key, then finish it
        hit = conn.execute(sql["find_unique"], {"key": j.unique_key}).fetchone()
        hit = hit or conn.execute(sql["insert_unique"], row).fetchone()
        if hit:
            return hit[0]
    raise StorageError(f"{where}: unique key {j.unique_key!r} kept "
                       f"changing hands while enqueueing; try again")


def _gate_columns(jobs) -> dict:
    return {"overlap_key": [j.overlap_key for j in jobs], "rate_key": [j.rate_key for j in jobs],
            "rate_max": [int(j.rate_max) for j in jobs],
            "rate_period": [float(j.rate_period) for j in jobs]}


def regate(conn, sql, overlap_keys, rate_keys, now: float, channel: str):
    """Queue jobrt_regate for the gates of jobs that came to or left the pending ones (None
    keys are no gate); returns its cursor, or None when there is no gate to turn."""
    overlap_keys = [key for key in overlap_keys if key is not None]
    rate_keys = [key for key in rate_keys if key is not None]
    if not overlap_keys and not rate_keys:
        return None
    return conn.execute(sql["regate"], {"overlap_keys": overlap_keys, "rate_keys": rate_keys,
                                        "now": now, "channel": channel})
