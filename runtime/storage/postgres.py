"""The PostgreSQL backend: one database shared by the supervisors of many hosts.

Owns the schema (versioned migrations under an advisory lock, so supervisors
starting together are safe), the transaction discipline (an autocommit
connection in pipeline mode: BEGIN, the statements and COMMIT travel
together, so an exchange costs one round trip) and reconnecting: a broken
connection is noticed before the next verb, or fails that one verb with a
StorageError, and the verb after reconnects. Storage never sleeps; backing
off between attempts is the caller's job. The SQL lives in `postgres.sql`;
connections, error messages and LISTEN live in `pgconn`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Iterable

import orjson
import psycopg
from psycopg import pq
from psycopg.rows import dict_row

from runtime.errors import StorageError
from runtime.storage import pginsert, pgschema
from runtime.storage.pgbatches import PostgresBatchVerbs
from runtime.storage.pgbrowse import PostgresBrowseVerbs
from runtime.storage.pgchains import PostgresChainVerbs
from runtime.storage.pgops import PostgresOpsVerbs, tagging
from runtime.storage.pgjob_sets import PostgresJobSetVerbs
from runtime.storage.pgticks import PostgresTickVerbs
from runtime.storage.base import (
    ClaimedJob, JobRecord, NewJob, Outcome, Storage, SupervisorRow, assemble_counts, decode_record,
)
from runtime.storage.workflows import batch_time
from runtime.storage.pgconn import Listener, Target, Unanswered, bounded, is_broken, probe
from runtime.storage.pgparams import check_jobs, settle_params

SQL = pgschema.SQL
FOLD_LOCK = 0x6A6F62727463  # 'jobrtc': the one heartbeat folding the count changes holds it
FOLD_BATCH = 5_000  # count changes one fold moves (a fold of changes to scattered keys
#                    takes ~15 us each, of changes to the same few keys ~2 us)
FOLD_BUDGET = 0.05  # seconds a heartbeat goes on folding while whole batches come back
ROLES = ("client", "supervisor")
IDLE = pq.TransactionStatus.IDLE


class PostgresStorage(PostgresBatchVerbs, PostgresChainVerbs, PostgresTickVerbs,
                      PostgresBrowseVerbs, PostgresOpsVerbs, PostgresJobSetVerbs, Storage):
    """A jobrt database in PostgreSQL. Not thread-safe: one per thread or process."""

    SQL = SQL

    def __init__(self, url: str, role: str = "client", call_timeout: float | None = None):
        """`call_timeout` (seconds, None: unbounded) bounds every call's wait for the server,
        so a supervisor's loop never waits on a frozen or unreachable server for longer."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        self.role = role
        self.call_timeout = call_timeout
        self.target = Target(url)  # the url stays in there, out of repr and messages
        self.conn: psycopg.Connection | None = None
        self.channel = ""
        self._woken = False  # the last enqueue committed its own wake-up
        conn = self._connection()
        try:
            pgschema.migrate(conn, self.target.where)
            database, schema = conn.execute(SQL["whereami"]).fetchone()
        except psycopg.Error as exc:
            self.close()
            raise self.target.error(exc, "preparing the schema") from None
        except BaseException:
            self.close()
            raise
        # Per database and schema: supervisors of unrelated apps are not woken.
        self.channel = "jobrt_" + hashlib.sha1(f"{database}\0{schema}".encode()).hexdigest()[:20]

    @property
    def longest_call(self) -> float:
        """A call waits for the server at most call_timeout, and connecting at least 2 s."""
        return float("inf") if self.call_timeout is None else max(2.0, self.call_timeout)

    @property
    def url_for_humans(self) -> str:
        return self.target.url_for_humans

    def __repr__(self) -> str:
        return f"<PostgresStorage {self.target.url_for_humans} role={self.role}>"

    # -- connection and transactions ----------------------------------------
    def _connection(self) -> psycopg.Connection:
        """The open connection, or a new one when the old one broke."""
        conn = self.conn
        if conn is not None and not is_broken(conn):
            try:
                probe(conn)  # notice a server that hung up while we were idle
            except psycopg.Error:
                pass
            if not is_broken(conn):
                return conn
        self._drop()
        self.conn = self.target.connect(self.role, self.call_timeout)
        return self.conn

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def _write(self, doing: str, work, *args, confirm_first: bool = False):
        """Run `work(conn, *args)` between BEGIN and COMMIT, all in one pipeline.

        `work` queues statements and returns a callable that builds the result
        once the transaction committed. With `confirm_first`, that callable
        runs before COMMIT is sent (one more round trip), so a
        connection lost before COMMIT is known to have written nothing: that
        transaction is tried once more, at once, on a new connection.
        """
        for retry in (False, True):
            conn = bounded(self._connection(), self.call_timeout)
            committing = False
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    finish = work(conn, *args)
                    if confirm_first:
                        # Fetching flushes the pipeline and waits for the results.
                        # (Not Pipeline.sync(): psycopg 3.3 can stop sending a large
                        # pipeline half-way there and wait forever.)
                        result = finish()
                        finish = lambda: result  # noqa: E731
                    committing = True
                    conn.execute("COMMIT")
                return finish()
            except psycopg.Error as exc:
                lost = self._recover(conn)
                if lost and confirm_first and not committing and not retry \
                        and not isinstance(exc, Unanswered):  # its bound is spent
                    continue
                raise self.target.error(exc, doing, committing=committing, lost=lost,
                                        rolled_back=True) from None
            except UnicodeError as exc:  # raised by psycopg while encoding a parameter
                self._recover(conn)
                raise StorageError(f"{self.target.where}: text that is not valid UTF-8 "
                                   f"({exc.reason}) (while {doing}); nothing was written") from None
            except BaseException:
                self._recover(conn)
                raise

    def _recover(self, conn: psycopg.Connection) -> bool:
        """After a failed transaction: roll back, or drop a broken connection. True if lost."""
        if is_broken(conn):
            self._drop()
            return True
        try:
            if conn.pgconn.transaction_status != IDLE:  # in a (failed) transaction
                conn.execute("ROLLBACK")
        except psycopg.Error:
            self._drop()
        return False

    def _read(self, doing: str, query: str, params: dict | None = None, dicts: bool = False):
        """One statement on its own; a connection found lost is replaced once, at once."""
        for retry in (False, True):
            conn = bounded(self._connection(), self.call_timeout)
            try:
                cursor = conn.cursor(row_factory=dict_row) if dicts else conn.cursor()
                return cursor.execute(query, params).fetchall()
            except psycopg.Error as exc:
                lost = self._recover(conn)
                if lost and not retry and not isinstance(exc, Unanswered):
                    continue
                raise self.target.error(exc, doing, lost=lost) from None

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        self._drop()

    # -- clients ---------------------------------------------------------
    def enqueue(self, jobs: list[NewJob]) -> list[int]:
        jobs = list(jobs)
        if not jobs:
            return []
        check_jobs(jobs, self.target.where)
        now = time.time()
        insert = pginsert.insert_unique if any(j.unique_key is not None for j in jobs) \
            else pginsert.insert_bulk
        if any(j.tags for j in jobs):  # jobs without tags never look at them again
            insert = tagging(insert, jobs)
        self._woken = False
        ids = self._write("enqueueing", insert, SQL, jobs, now, self.channel, self.target.where,
                          confirm_first=True)
        self._woken = True  # its pg_notify was delivered with the commit
        return ids

    def notify(self) -> None:
        """Wake the listening supervisors. Every enqueue already sent pg_notify in its
        transaction (delivered when it commits), so right after an enqueue this
        costs nothing; otherwise it sends one notification. Best effort."""
        if self._woken:
            self._woken = False
            return
        try:
            self._read("waking supervisors", SQL["wake"], {"channel": self.channel})
        except StorageError:
            pass  # supervisors also poll

    def listener(self) -> Listener:
        return Listener(self.target, self.channel, self.call_timeout)

    # -- the supervisor's hot path -----------------------------------------
    def exchange(self, owner: str, outcomes: Iterable[Outcome], queues: list[str],
                 limit: int, lease_expires: float, now: float) -> list[ClaimedJob]:
        outcomes = outcomes if isinstance(outcomes, (list, tuple)) else list(outcomes)
        settles = settle_params(owner, outcomes)
        queues = list(dict.fromkeys(queues))  # a queue named twice is still one queue
        self.refused = 0
        if not settles and (limit <= 0 or not queues):
            return []
        gated = [o for o in outcomes if o.overlap_key is not None or o.rate_key is not None]
        gates = ([o.overlap_key for o in gated], [o.rate_key for o in gated])
        claimed, settled = self._write("claiming and settling jobs", _exchange, settles, gates, {
            "owner": owner, "queues": queues, "limit": limit,
            "lease_expires": lease_expires, "now": now, "channel": self.channel},
            {"now": batch_time(outcomes, now), "channel": self.channel})
        self.refused = len(outcomes) - settled
        return claimed

    def next_due(self, queues: list[str]) -> float | None:
        if not queues:
            return None
        return self._read("reading the next due time", SQL["next_due"],
                          {"queues": list(queues)})[0][0]

    def oldest_pending(self, now: float) -> float | None:
        return self._read("reading the oldest pending job", SQL["oldest_pending"],
                          {"now": now})[0][0]

    # -- leases and supervisors --------------------------------------------
    def clock(self) -> float:
        return self._read("reading the server's clock", SQL["clock"])[0][0]

    def heartbeat(self, owner: str, host: str, pid: int, started_at: float,
                  info: dict, now: float, lease_expires: float, *, held=None) -> int:
        def work(conn):
            conn.execute(SQL["upsert_supervisor"], {
                "owner": owner, "host": host, "pid": pid, "started_at": started_at,
                "now": now, "info": orjson.dumps(info)})
            params = {"owner": owner, "lease_expires": lease_expires}
            if held is not None:
                params["held"] = list(held)
            cursor = conn.execute(SQL["renew_leases" if held is None else "renew_held_leases"], params)
            folded = _fold(conn)
            return lambda: (cursor.rowcount, folded())
        started = time.monotonic()
        renewed, folded = self._write("renewing leases", work)
        # A bulk change (a big enqueue_many, clear, flush) may leave more than a batch of
        # count changes: fold more while the heartbeat's time allows, each batch in a
        # transaction of its own; best effort (the next heartbeat goes on).
        while folded == FOLD_BATCH and time.monotonic() - started < FOLD_BUDGET:
            try:
                folded = self._write("folding job counts", _fold)
            except StorageError:
                break
        return renewed

    def supervisors(self) -> list[SupervisorRow]:
        rows = self._read("listing supervisors", SQL["supervisors"])
        return [SupervisorRow(o, h, p, s, b, orjson.loads(i)) for o, h, p, s, b, i in rows]

    def remove_supervisor(self, owner: str) -> None:
        self._change("removing a supervisor", "remove_supervisor", {"owner": owner})

    def rescue(self, now: float, owner: str | None = None) -> int:
        if owner is None:
            return self._gated_change("rescuing jobs", "rescue_expired", {"now": now}, now)
        return self._gated_change("rescuing jobs", "rescue_owner", {"owner": owner, "now": now}, now)

    def cancel_requests(self, owner: str) -> list[tuple[int, int]]:
        return [tuple(row) for row in self._read("reading cancel requests", SQL["cancel_requests"],
                                                 {"owner": owner})]

    def _gated_change(self, doing: str, name: str, params: dict, now: float) -> int:
        """One statement that moves jobs to or from pending and returns how many, with the
        overlap and rate keys among them; then the turns at those gates. Both after the
        gates' lock (which a claim takes after its rows: so this never waits for a row
        while holding it)."""
        def work(conn):
            conn.execute(SQL["gate_lock"])
            moved, overlap_keys, rate_keys = conn.execute(SQL[name], params).fetchone()  # waits
            pginsert.regate(conn, SQL, overlap_keys or [], rate_keys or [], now, self.channel)
            conn.execute(SQL["batch_due"], {"now": now, "channel": self.channel})
            return lambda: moved
        return self._write(doing, work)

    def _change(self, doing: str, name: str, params: dict) -> int:
        """One statement in its own transaction; returns the rows it touched."""
        def work(conn):
            cursor = conn.execute(SQL[name], params)
            return lambda: max(cursor.rowcount, 0)
        return self._write(doing, work)

    # -- queries and admin --------------------------------------------------
    def get(self, job_id: int) -> JobRecord | None:
        rows = self._read(f"reading job {job_id}", SQL["get"], {"id": job_id}, dicts=True)
        return self._with_tags([decode_record(rows[0])])[0] if rows else None

    def counts(self, now: float) -> dict[str, dict[str, int]]:
        return assemble_counts(self._read("counting jobs", SQL["counts"], {"now": now}))

    def pending_by_queue_and_name(self) -> list[tuple[str, str, int]]:
        # Sorted here: ORDER BY would follow the database's collation, not code points.
        return sorted(tuple(row) for row in self._read("counting pending jobs by queue and name",
                                                       SQL["pending_by_queue_and_name"]))

    def failed(self, limit: int = 100) -> list[JobRecord]:
        rows = self._read("listing failed jobs", SQL["failed"], {"limit": limit}, dicts=True)
        return [decode_record(row) for row in rows]

    def retry_failed(self, job_ids: list[int] | None, now: float) -> int:
        ids = [] if job_ids is None else sorted({int(i) for i in job_ids})
        return self._gated_change("retrying failed jobs", "retry_failed",
                                  {"now": now, "all": job_ids is None, "ids": ids}, now)

    def forget(self, job_id: int) -> bool:
        return self._change("forgetting a failed job", "forget", {"id": job_id}) > 0

    def flush_failed(self) -> int:
        return self._change("flushing failed jobs", "flush_failed", {})

    def cancel(self, job_id: int, now: float) -> str | None:
        def work(conn):
            conn.execute(SQL["gate_lock"])
            rows = conn.execute(SQL["cancel"], {"id": job_id, "now": now}).fetchall()
            pginsert.regate(conn, SQL, [row[1] for row in rows], [row[2] for row in rows], now,
                            self.channel)
            conn.execute(SQL["batch_due"], {"now": now, "channel": self.channel})
            return lambda: rows[0][0] if rows else None
        return self._write("cancelling a job", work)

    def clear(self, queue: str, now: float | None = None) -> int:
        return self._gated_change(f"clearing queue {queue!r}", "clear", {"queue": queue},
                                  time.time() if now is None else now)

    # -- retention ------------------------------------------------------------
    def prune(self, before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        def work(conn):
            conn.execute(SQL["prune_batches"], {"before": before, "limit": limit})
            conn.execute(SQL["prune_chains"], {"before": before, "limit": limit})
            cursor = conn.execute(SQL["prune"], {"before": before, "limit": limit})
            return lambda: max(cursor.rowcount, 0)
        return self._write("pruning ended jobs", work)


def _fold(conn):
    """Queue one fold of the count changes (and forgetting the counts that fell to 0);
    returns a callable giving how many changes it moved (0: another heartbeat folds)."""
    cursor = conn.execute(SQL["fold_counts"], {"lock": FOLD_LOCK, "limit": FOLD_BATCH})
    conn.execute(SQL["forget_zero_counts"], {"lock": FOLD_LOCK})
    return lambda: cursor.fetchone()[0]


def _exchange(conn, settles, gates, claim, batch_due):
    """Queue the statements; returns a callable giving (claimed jobs, outcomes settled)."""
    settled = [conn.execute(SQL[name], params) for name, params in settles]
    # the settled jobs' gates (if any had): the next job's turn
    pginsert.regate(conn, SQL, *gates, claim["now"], claim["channel"])
    if settles:  # members of batches among them: the callbacks due (an index probe if none)
        conn.execute(SQL["batch_due"], batch_due)
    def count() -> int:  # settle_failed counts the jobs it failed in its one row
        return sum(cursor.fetchone()[0] if name == "settle_failed" else max(cursor.rowcount, 0)
                   for (name, _), cursor in zip(settles, settled))
    if claim["limit"] <= 0 or not claim["queues"]:
        return lambda: ([], count())
    conn.execute(SQL["reopen"], claim)
    cursor = conn.execute(SQL["claim"], claim)
    conn.execute(SQL["started"], claim)

    def claimed() -> list[ClaimedJob]:
        rows = cursor.fetchall()
        rows.sort(key=lambda r: (r[6], -r[7], r[8], r[0]))  # queue order, then claim order
        return [ClaimedJob(r[0], r[1], r[2], r[3], r[4], r[5], r[9], r[10], r[11], r[12], r[13],
                           r[14], available_at=r[8]) for r in rows], count()
    return claimed
