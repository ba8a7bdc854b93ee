"""The SQLite backend: one database file in WAL mode, nothing to install.

The verbs of Storage over one connection, opened by `sqlite_file` (which owns the
file, its schema and the explanation of sqlite3 errors), with the transaction
discipline: autocommit driver, explicit `BEGIN IMMEDIATE` for every write, so a
writer takes the lock up front instead of failing mid-transaction on an upgrade,
and the job counters tallied by each write (`sqlite_counts`) applied before its
COMMIT. The SQL lives in `sqlite.sql`.
"""

from __future__ import annotations

import os
import sqlite3
import time
import weakref
from collections import Counter
from typing import Iterable
from urllib.parse import quote

import orjson

from runtime.errors import StorageError
from runtime.storage import (
    sqlite_batches, sqlite_browse, sqlite_chains, sqlite_gates, sqlite_insert, sqlite_job_sets, sqlite_ops,
    sqlite_settle,
    sqlite_ticks, wakeup,
)
from runtime.storage.base import (
    CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, ClaimedJob, JobRecord, NewJob, Outcome, Storage,
    SupervisorRow, assemble_counts, decode_record,
)
from runtime.storage.workflows import batch_time
from runtime.storage.sqlite_counts import Tally
from runtime.storage.sqlite_file import (
    SQL, SYNCHRONOUS, connect, create_file, explain, reconnect, require_file, rollback,
)

TIDY_BATCH = 10_000  # emptied job_counts rows one heartbeat deletes at most


class SqliteStorage(sqlite_batches.SqliteBatchVerbs, sqlite_chains.SqliteChainVerbs,
                    sqlite_ticks.SqliteTickVerbs, sqlite_browse.SqliteBrowseVerbs,
                    sqlite_ops.SqliteOpsVerbs, sqlite_job_sets.SqliteJobSetVerbs, Storage):
    """A jobrt database in one SQLite file. Not thread-safe: one per thread or process."""

    _workflows_due = staticmethod(sqlite_batches.work_due)  # for the chain verbs

    def __init__(self, path: str, role: str = "client", create: bool = True):
        if role not in SYNCHRONOUS:
            raise ValueError(f"role must be one of {sorted(SYNCHRONOUS)}, not {role!r}")
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise StorageError(f"jobrt needs SQLite 3.35 or newer (UPDATE ... RETURNING); this "
                               f"Python links SQLite {sqlite3.sqlite_version}")
        self.path = os.path.abspath(path)
        self.role = role
        self.url_for_humans = "sqlite:///" + self.path
        if create:
            create_file(self.path)
            target, uri = self.path, False
        else:
            require_file(self.path)
            # mode=rw: should the file vanish meanwhile, SQLite fails instead of creating it
            target, uri = "file:" + quote(self.path) + "?mode=rw", True
        self.key = os.path.realpath(self.path)
        self.waker = wakeup.Waker(self.key)
        self._target = (target, uri)
        self._conn: sqlite3.Connection | None = connect(self.path, target, uri, role)
        self._closed = False
        # SQLite keeps, per process, what it knows of each open file's locks; a child forked
        # while this connection is open inherits that, and once the child closes the fds it
        # does not use (a worker does), opening the file there fails ("locking protocol"):
        # a job could not enqueue into its own database. So no connection crosses a fork:
        # it closes before and opens again on next use (a fork of a worker costs ~0.3 ms more).
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: (store := ref()) is not None and store._suspend())

    @property
    def conn(self) -> sqlite3.Connection | None:
        if self._conn is None and not self._closed:
            self._conn = reconnect(self.path, *self._target, self.role)
        return self._conn

    def _suspend(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.in_transaction:
            conn.close()
        elif conn is not None:
            self._conn = conn  # forked inside a transaction (not by jobrt): leave it be

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        conn, self._conn, self._closed = self._conn, None, True
        if conn is not None:
            conn.close()
        self.waker.close()

    def _write(self, doing: str, work, *args):
        """Run `work(conn, tally, *args)` in one BEGIN IMMEDIATE transaction, then
        apply to job_counts the moves of jobs it added to `tally`, before COMMIT."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tally = Tally()
                out = work(conn, tally, *args)
                tally.apply(conn, SQL["count_jobs"])
                conn.execute("COMMIT")
                if tally.wake:
                    self.notify()
                return out
            except BaseException:
                rollback(conn)
                raise
        except sqlite3.Error as exc:
            raise explain(self.path, exc, doing) from exc

    def _read(self, doing: str, sql: str, args: tuple = ()) -> list:
        return self._cursor(doing, sql, args).fetchall()

    def _cursor(self, doing: str, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise explain(self.path, exc, doing) from exc

    # -- clients ---------------------------------------------------------
    def enqueue(self, jobs: list[NewJob]) -> list[int]:
        now = time.time()
        tagged = any(j.tags for j in jobs)  # jobs without tags never look at them again
        # One job goes in by a plain INSERT, its id from lastrowid: the bulk insert would
        # read AUTOINCREMENT's counter first, an extra statement for one row.
        if len(jobs) == 1 or any(j.unique_key is not None or j.overlap_key is not None
                                 or j.rate_key is not None for j in jobs):
            insert, rows = sqlite_insert.insert_each, sqlite_insert.each_rows(jobs, now)
        else:
            insert, rows = sqlite_insert.insert_bulk, sqlite_insert.bulk_statements(jobs, now)
        if not rows:
            return []
        return self._write("enqueueing", sqlite_ops.tagging(insert, jobs) if tagged else insert, rows)

    def notify(self) -> None:
        self.waker.wake()

    def listener(self) -> wakeup.WakeListener:
        return wakeup.WakeListener(self.key)

    # -- the supervisor's hot path -----------------------------------------
    def exchange(self, owner: str, outcomes: Iterable[Outcome], queues: list[str],
                 limit: int, lease_expires: float, now: float) -> list[ClaimedJob]:
        succeeded, failed, pending, cancelled = [], [], [], []
        moved: tuple[list, ...] = ([], [], [], [])  # (queue, name, available_at) of each
        put_back = []  # (job id, when) of the pending ones
        outcomes = outcomes if isinstance(outcomes, (list, tuple)) else list(outcomes)
        for o in outcomes:
            state = o.state
            if state == SUCCEEDED:
                succeeded.append((o.result, o.at, o.job_id, o.attempt, owner))
                moved[0].append((o.queue, o.name, None))
            elif state == FAILED:
                failed.append((o.error, o.traceback, o.at, 1 if o.exception else 0, o.job_id,
                               o.attempt, owner))
                moved[1].append((o.queue, o.name, None))
            elif state == PENDING:
                at = o.at if o.available_at is None else o.available_at
                pending.append((at, o.error, o.traceback, 1 if o.undo_attempt else 0,
                                1 if o.exception else 0, o.job_id, o.attempt, owner))
                moved[2].append((o.queue, o.name, at))
                put_back.append((o.job_id, o.at))
            elif state == CANCELLED:
                cancelled.append((o.error, o.at, o.job_id, o.attempt, owner))
                moved[3].append((o.queue, o.name, None))
            else:
                raise ValueError(f"an outcome's state is succeeded, failed, pending or "
                                 f"cancelled, not {state!r}")
        settles = (succeeded, failed, pending, cancelled)
        self.refused = 0
        if not any(settles) and limit <= 0:
            return []
        gated = [(o.overlap_key, o.rate_key) for o in outcomes
                 if o.overlap_key is not None or o.rate_key is not None]
        claimed, self.refused = self._write("claiming and settling jobs", _exchange, settles,
                                            moved, put_back, gated, owner, queues, limit,
                                            lease_expires, now, batch_time(outcomes, now))
        return claimed

    def next_due(self, queues: list[str]) -> float | None:
        due = [row[0] for queue in queues
               for row in self._read("reading the next due time", SQL["next_due"], (queue,))
               if row[0] is not None]
        return min(due) if due else None

    def oldest_pending(self, now: float) -> float | None:
        return self._read("reading the oldest pending job", SQL["oldest_pending"], (now,))[0][0]

    # -- leases and supervisors --------------------------------------------
    def heartbeat(self, owner: str, host: str, pid: int, started_at: float,
                  info: dict, now: float, lease_expires: float, *, held=None) -> int:
        def work(conn, tally):
            conn.execute(SQL["upsert_supervisor"],
                         (owner, host, pid, started_at, now, orjson.dumps(info)))
            conn.execute(SQL["forget_zero_counts"], (TIDY_BATCH,))
            if held is None:
                return conn.execute(SQL["renew_leases"], (lease_expires, owner)).rowcount
            return conn.execute(SQL["renew_held_leases"],
                                (lease_expires, owner, orjson.dumps(list(held)))).rowcount
        return self._write("renewing leases", work)

    def supervisors(self) -> list[SupervisorRow]:
        rows = self._read("listing supervisors", SQL["supervisors"])
        return [SupervisorRow(o, h, p, s, b, orjson.loads(i)) for o, h, p, s, b, i in rows]

    def remove_supervisor(self, owner: str) -> None:
        self._write("removing a supervisor",
                    lambda conn, tally: conn.execute(SQL["remove_supervisor"], (owner,)))

    def rescue(self, now: float, owner: str | None = None) -> int:
        if owner is None:
            sql, args = SQL["rescue_expired"], (now,)
        else:
            sql, args = SQL["rescue_owner"], (owner,)
        def work(conn, tally):
            jobs = conn.execute(sql, args).fetchall()
            tally.move(RUNNING, PENDING, [job[1:4] for job in jobs])
            _cancel_retried(conn, tally, [(job[0], now) for job in jobs], now)
            sqlite_gates.regate(conn, [job[4:] for job in jobs], now)
            sqlite_batches.work_due(conn, tally, now)
            return len(jobs)
        return self._write("rescuing jobs", work)

    def cancel_requests(self, owner: str) -> list[tuple[int, int]]:
        return [tuple(row) for row in self._read("reading cancel requests",
                                                 SQL["cancel_requests"], (owner,))]

    # -- queries and admin --------------------------------------------------
    def get(self, job_id: int) -> JobRecord | None:
        try:
            cursor = self.conn.execute(SQL["get"], (job_id,))
            row = cursor.fetchone()
        except sqlite3.Error as exc:
            raise explain(self.path, exc, f"reading job {job_id}") from exc
        return self._with_tags([_decode(cursor, row)])[0] if row else None

    def counts(self, now: float) -> dict[str, dict[str, int]]:
        return assemble_counts(self._read("counting jobs", SQL["counts"], (now,)))

    def pending_by_queue_and_name(self) -> list[tuple[str, str, int]]:
        return [tuple(row) for row in self._read("counting pending jobs by queue and name",
                                                 SQL["pending_by_queue_and_name"])]

    def failed(self, limit: int = 100) -> list[JobRecord]:
        try:
            cursor = self.conn.execute(SQL["failed"], (limit,))
            return [_decode(cursor, row) for row in cursor.fetchall()]
        except sqlite3.Error as exc:
            raise explain(self.path, exc, "listing failed jobs") from exc

    def retry_failed(self, job_ids: list[int] | None, now: float) -> int:
        def work(conn, tally):
            if job_ids is None:
                ids = sorted(row[0] for row in conn.execute(SQL["failed_ids"]))
            else:
                ids = sorted(set(job_ids))
            # One row at a time in id order, so which of two failed jobs sharing
            # a unique key comes back is defined (the older one).
            sql = SQL["retry_failed"]
            jobs = [job for i in ids for job in conn.execute(sql, (now, i)).fetchall()]
            tally.move(FAILED, PENDING, [job[:3] for job in jobs])  # queue, name, available_at
            sqlite_gates.regate(conn, [job[3:] for job in jobs], now)
            sqlite_batches.work_due(conn, tally, now)
            return len(jobs)
        return self._write("retrying failed jobs", work)

    def forget(self, job_id: int) -> bool:
        return self._write("forgetting a failed job", _delete, SQL["forget"],
                           (job_id,)) > 0

    def flush_failed(self) -> int:
        return self._write("flushing failed jobs", _delete, SQL["flush_failed"], ())

    def cancel(self, job_id: int, now: float) -> str | None:
        def work(conn, tally):
            found = conn.execute(SQL["job_state"], (job_id,)).fetchone()
            if found is None:
                return None
            if found[0] == PENDING:
                jobs = conn.execute(SQL["cancel"], (now, now, job_id)).fetchall()
                tally.move(PENDING, CANCELLED, [job[:3] for job in jobs])
                sqlite_gates.regate(conn, [job[3:] for job in jobs], now)
                sqlite_batches.work_due(conn, tally, now)
            elif found[0] == RUNNING:
                conn.execute(SQL["request_cancel"], (now, job_id))
            return found[0]
        return self._write("cancelling a job", work)

    def clear(self, queue: str, now: float | None = None) -> int:
        def work(conn, tally):
            jobs = conn.execute(SQL["clear"], (queue,)).fetchall()
            for job in jobs:
                tally.add(PENDING, job[1], job[2], job[3], -1)
            at = time.time() if now is None else now
            sqlite_gates.regate(conn, [job[4:] for job in jobs], at)
            sqlite_batches.work_due(conn, tally, at)
            return len(jobs)
        return self._write(f"clearing queue {queue!r}", work)

    # -- retention ------------------------------------------------------------
    def prune(self, before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        def work(conn, tally):
            conn.execute(SQL["prune_batches"], (before, limit))
            conn.execute(SQL["prune_chains"], (before, limit))
            return _delete(conn, tally, SQL["prune"], (before, limit))
        return self._write("pruning ended jobs", work)


def _decode(cursor: sqlite3.Cursor, row: tuple) -> JobRecord:
    return decode_record(dict(zip([c[0] for c in cursor.description], row)))


def _delete(conn: sqlite3.Connection, tally: Tally, sql: str, args: tuple) -> int:
    """Run a DELETE of jobs that returns (state, queue, name, available_at if pending) of
    each, tallying them gone; the count deleted."""
    n = 0
    for (state, queue, name, at), k in Counter(conn.execute(sql, args)).items():
        tally.add(state, queue, name, at, -k)
        n += k
    return n


def _claim_order(row: tuple):
    return (-row[6], row[7], row[0])


def _cancel_retried(conn: sqlite3.Connection, tally: Tally, put_back: list[tuple],
                    now: float) -> None:
    """Of the jobs just put back to pending, (id, when) each, those asked to cancel while
    they ran are cancelled then."""
    if put_back:
        jobs = conn.execute(SQL["cancel_retried"], (orjson.dumps(put_back),)).fetchall()
        tally.move(PENDING, CANCELLED, [job[:3] for job in jobs])
        sqlite_gates.regate(conn, [job[3:] for job in jobs], now)


def _exchange(conn, tally, settles, moved, put_back, gated, owner, queues, limit, lease_expires,
              now, settled_at):
    refused = 0
    if any(settles):
        failed, refused = sqlite_settle.settle(conn, tally, owner, settles, moved)
        _cancel_retried(conn, tally, put_back, now)
        if failed:
            hooks = conn.execute(SQL["failure_hooks"], (orjson.dumps(failed),))
            tally.add_all(PENDING, hooks.fetchall(), 1)
        # a stale outcome's keys too: the turns come out right either way
        sqlite_gates.regate(conn, gated, now)
        sqlite_batches.work_due(conn, tally, settled_at)
    claimed: list[ClaimedJob] = []
    if limit > 0:
        sqlite_gates.reopen(conn, now)
        rated = []  # (rate key, period) of the jobs claimed
        claim = SQL["claim"]
        for queue in queues:
            wanted = limit - len(claimed)
            if wanted <= 0:
                break
            rows = conn.execute(claim, (owner, lease_expires, now, queue, now, wanted)).fetchall()
            if len(rows) > 1:
                rows.sort(key=_claim_order)
            claimed.extend([ClaimedJob(r[0], r[1], r[2], r[3], r[4], r[5], r[8], r[10], r[11],
                                       r[13], r[14], r[15], available_at=r[7]) for r in rows])
            tally.move(PENDING, RUNNING, [(r[1], r[2], r[7]) for r in rows])
            starts = [r[0] for r in rows if r[9]]
            if starts:
                conn.execute(SQL["free_at_start"], (orjson.dumps(starts),))
            rated += [(r[11], r[12]) for r in rows if r[11] is not None]
            retried = [r[0] for r in rows if r[13] is not None]
            if retried:
                conn.execute(SQL["retried_seen"], (orjson.dumps(retried),))
        if rated:  # after every queue's claim: one job per rate key and claim
            sqlite_gates.started(conn, rated, now)
    return claimed, refused
