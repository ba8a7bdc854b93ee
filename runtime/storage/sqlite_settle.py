"""Settling a batch of outcomes in the SQLite backend's exchange: fenced by (id, attempt,
owner), with a fast path for the usual case (every outcome current and naming its job)."""

from __future__ import annotations

import sqlite3

import orjson

from runtime.storage.base import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED
from runtime.storage.sqlite_counts import Tally
from runtime.storage.sqlite_file import SQL

_SETTLES = ((SUCCEEDED, SQL["settle_succeeded"]), (FAILED, SQL["settle_failed"]),
            (PENDING, SQL["settle_pending"]), (CANCELLED, SQL["settle_cancelled"]))



def _as_json(succeeded: list) -> bytes | None:
    """settle_succeeded_many's argument, or None: no outcome, or a result that is not UTF-8
    (a forged frame's bytes, stored as they came by the row-by-row statement)."""
    if not succeeded:
        return None
    try:
        return orjson.dumps([(None if a[0] is None else a[0].decode(), a[1], a[2], a[3]) for a in succeeded])
    except UnicodeDecodeError:
        return None


def settle(conn: sqlite3.Connection, tally: Tally, owner: str, settles: tuple,
            moved: tuple) -> tuple[list[int], int]:
    """Settle the outcomes whose runs are still this owner's (a stale or repeated one
    changes nothing) and tally the jobs they move; returns the ids of those it failed,
    and how many outcomes it refused. `settles` holds the statements'
    arguments per state, each ending with (id, attempt, owner); `moved` the (queue, name,
    available_at) of each, as the outcomes say.

    Nearly always every outcome is current and names its job: then the settles run as
    they are, and the tally follows the outcomes. Otherwise they are undone and the
    current runs read first, which costs a row lookup per outcome."""
    if all(job[0] is not None for jobs in moved for job in jobs):
        conn.execute("SAVEPOINT settle")
        # The rows the settles changed: rowcount, unlike total_changes, leaves out those
        # their triggers (a batch's counts) changed.
        changed = 0
        first = 0  # the first state settled row by row
        document = _as_json(settles[0])
        if document is not None:  # succeeded: the usual case, in one statement
            changed += conn.execute(SQL["settle_succeeded_many"], (document, owner)).rowcount
            first = 1
        for (_, sql), args in zip(_SETTLES[first:], settles[first:]):
            if args:
                changed += conn.executemany(sql, args).rowcount
        if changed == sum(map(len, settles)):
            conn.execute("RELEASE settle")
            for (state, _), jobs in zip(_SETTLES, moved):
                if jobs:
                    tally.add_all(RUNNING, jobs, -1)
                    tally.add_all(state, jobs, 1)
            return [args[-3] for args in settles[1]], 0
        conn.execute("ROLLBACK TO settle")
        conn.execute("RELEASE settle")
    ids = [args[-3] for args_of_state in settles for args in args_of_state]
    running = {row[0]: row[1:] for row in conn.execute(SQL["running_jobs"],
                                                       (orjson.dumps(ids), owner))}
    failed, applied = [], 0
    for (state, sql), outcomes in zip(_SETTLES, settles):
        current = []
        for args in outcomes:
            run = running.get(args[-3])
            if run is not None and run[0] == args[-2]:
                del running[args[-3]]
                current.append(args)
                tally.add(RUNNING, run[1], run[2], None, -1)
                tally.add(state, run[1], run[2], args[0] if state == PENDING else None, 1)
        if current:
            applied += len(current)
            conn.executemany(sql, current)
            if state == FAILED:
                failed = [args[-3] for args in current]
    return failed, len(ids) - applied
