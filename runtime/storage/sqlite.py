"""The SQLite backend: one database file in WAL mode, nothing to install.

Owns the file's lifecycle (create 0600, refuse foreign files, migrate), the
transaction discipline (autocommit driver, explicit `BEGIN IMMEDIATE` for every
write, so a writer takes the lock up front instead of failing mid-transaction
on an upgrade) and the translation of sqlite3 errors into StorageError, each
naming the file and what to do. The SQL lives in `sqlite.sql`.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections import Counter
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

import orjson

from runtime.errors import StorageError
from runtime.storage import sqlfile, wakeup
from runtime.storage.sqlite_counts import Tally
from runtime.storage.base import (
    CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, ClaimedJob, JobRecord, NewJob, Outcome, Storage, SupervisorRow,
    assemble_counts, decode_record,
)

SQL = sqlfile.load(Path(__file__).with_name("sqlite.sql"))
MIGRATIONS = sqlfile.migrations(SQL)
SCHEMA_VERSION = MIGRATIONS[-1][0]
APPLICATION_ID = 0x6A6F6272  # 'jobr', set by migration_1
BUSY_TIMEOUT_S = 10
# A supervisor must not sit in SQLite's busy wait while deadlines pass: it gives up
# quickly, keeps its results in memory and retries from its event loop.
RUNNING_BUSY_TIMEOUT_MS = {"client": BUSY_TIMEOUT_S * 1000, "supervisor": 200}
SYNCHRONOUS = {"client": "FULL", "supervisor": "NORMAL"}
TIDY_BATCH = 10_000  # emptied job_counts rows one heartbeat deletes at most

# Primary result codes (https://sqlite.org/rescode.html) -> what a human should do.
_ADVICE = {
    5: "database is locked: another process held its write lock longer than the "
       "busy timeout; try again",
    6: "database is locked by another statement on the same connection",
    8: "database is readonly: make the file, its -wal/-shm files and its directory "
       "writable by this user",
    10: "disk I/O error: check the device and the filesystem holding the file",
    11: "the database file is corrupt; jobrt left it untouched: restore a backup or "
        "point the storage url at another file",
    13: "disk is full: free space on the device holding the file",
    14: "unable to open the database file: check the path and the permissions of it "
        "and its directory",
    19: "the database rejected the data",
    26: "not a jobrt database (not an SQLite file); jobrt left it untouched: point the "
        "storage url at another file",
}


def explain(path: str, exc: sqlite3.Error, doing: str) -> StorageError:
    """One line: which file, what failed, what to do."""
    code = getattr(exc, "sqlite_errorcode", None)
    advice = _ADVICE.get(code & 0xFF) if isinstance(code, int) else None
    detail = str(exc)
    if advice is None:
        advice = detail
    elif code & 0xFF == 19:
        advice = f"{advice} ({detail})"
    contended = isinstance(code, int) and code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    return StorageError(f"SQLite database {path}: {advice} (while {doing})", contended=contended)


class SqliteStorage(Storage):
    """A jobrt database in one SQLite file. Not thread-safe: one per thread or process."""

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
            self._create_file()
            target, uri = self.path, False
        else:
            self._require_file()
            # mode=rw: should the file vanish meanwhile, SQLite fails instead of creating it
            target, uri = "file:" + quote(self.path) + "?mode=rw", True
        self.key = os.path.realpath(self.path)
        try:
            self.conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                        uri=uri)
        except sqlite3.Error as exc:
            raise explain(self.path, exc, "opening") from exc
        try:
            self._prepare()
            self.conn.execute(f"PRAGMA busy_timeout = {RUNNING_BUSY_TIMEOUT_MS[role]}")
        except BaseException:
            self.conn.close()
            raise

    # -- opening ---------------------------------------------------------
    def _create_file(self) -> None:
        """Create the parent directory and the file (mode 0600) unless present.

        Created by us rather than by SQLite, so the mode is 0600 from the first
        byte; SQLite gives its -wal and -shm files the database file's mode.
        """
        path = self.path
        if os.path.isdir(path):
            raise StorageError(f"{path} is a directory, not a database file: end the storage "
                               f"url with a file name, e.g. sqlite:///{path}/jobrt.db")
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the directory {parent} for the database "
                               f"{path}: {exc.strerror}") from exc
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open the database {path} for writing: {exc.strerror}; "
                               f"check the path and its permissions") from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StorageError(f"{path} is not a regular file: point the storage url at a "
                                   f"database file")
        finally:
            os.close(fd)

    def _require_file(self) -> None:
        """For a client that must not create storage: the database file must exist."""
        path = self.path
        try:
            mode = os.stat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise StorageError(f"SQLite database {path} does not exist: `jobrt start` or "
                               f"enqueueing a job creates it; check [storage] url") from None
        except OSError as exc:
            raise StorageError(f"cannot open the database {path}: {exc.strerror}; check the "
                               f"path and its permissions") from exc
        if stat.S_ISDIR(mode):
            raise StorageError(f"{path} is a directory, not a database file: end the storage "
                               f"url with a file name, e.g. sqlite:///{path}/jobrt.db")
        if not stat.S_ISREG(mode):
            raise StorageError(f"{path} is not a regular file: point the storage url at a "
                               f"database file")

    def _prepare(self) -> None:
        """Configure the connection and migrate, retrying while another process does the same.

        Switching to WAL and the first read of a fresh WAL database can fail
        with SQLITE_BUSY at once, without waiting on the busy timeout, when
        several processes open a new file together; so those steps retry here
        until the same 10 s are up.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        pause = 0.001
        while True:
            try:
                self._configure()
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                self._rollback()
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                if code not in (5, 6) or time.monotonic() + pause > deadline:
                    raise explain(self.path, exc, "opening") from exc
                time.sleep(pause)  # back off from a competing opener, not synchronisation
                pause = min(pause * 2, 0.05)
            except sqlite3.Error as exc:
                raise explain(self.path, exc, "opening") from exc

    def _configure(self) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        # Identify before anything can write: journal_mode=WAL rewrites the
        # header, and a file that is not ours must stay byte-for-byte intact.
        self._identify()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError(f"SQLite database {self.path}: cannot switch to WAL mode "
                               f"(got {mode!r}); put the file on a local filesystem")
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[self.role]}")

    def _identify(self) -> int:
        version, app_id, objects = self.conn.execute(SQL["identify"]).fetchone()
        foreign = (app_id != APPLICATION_ID) if version else objects > 0
        if foreign:
            raise StorageError(f"{self.path} is an SQLite database but not a jobrt one; jobrt "
                               f"left it untouched: point the storage url at another file")
        if version > SCHEMA_VERSION:
            raise StorageError(f"SQLite database {self.path} has schema version {version}, newer "
                               f"than this jobrt knows ({SCHEMA_VERSION}): upgrade jobrt")
        return version

    def _migrate(self) -> None:
        """Apply missing migrations. Two processes may start at once: the second
        waits on BEGIN IMMEDIATE, then finds the version already current."""
        conn = self.conn
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._identify()
            for number, sql in MIGRATIONS:
                if number > version:
                    for statement in sqlfile.statements(sql):
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def _rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the original error is the one worth reporting

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
                return out
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as exc:
            raise explain(self.path, exc, doing) from exc

    def _read(self, doing: str, sql: str, args: tuple = ()) -> list:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise explain(self.path, exc, doing) from exc

    # -- clients ---------------------------------------------------------
    def enqueue(self, jobs: list[NewJob]) -> list[int]:
        now = time.time()
        rows = [(j.queue, j.name, j.payload, j.priority, j.options, j.available_at, now,
                 j.unique_key, j.batch_id) for j in jobs]
        if not rows:
            return []
        unique = any(j.unique_key is not None for j in jobs)
        return self._write("enqueueing", _insert_unique if unique else _insert_bulk, rows)

    def notify(self) -> None:
        wakeup.wake(self.key)

    def listener(self) -> wakeup.WakeListener:
        return wakeup.WakeListener(self.key)

    # -- the supervisor's hot path -----------------------------------------
    def exchange(self, owner: str, outcomes: Iterable[Outcome], queues: list[str],
                 limit: int, lease_expires: float, now: float) -> list[ClaimedJob]:
        succeeded, failed, pending = [], [], []
        moved: tuple[list, list, list] = ([], [], [])  # (queue, name, available_at) of each
        for o in outcomes:
            state = o.state
            if state == SUCCEEDED:
                succeeded.append((o.result, o.at, o.job_id, o.attempt, owner))
                moved[0].append((o.queue, o.name, None))
            elif state == FAILED:
                failed.append((o.error, o.traceback, o.at, o.job_id, o.attempt, owner))
                moved[1].append((o.queue, o.name, None))
            elif state == PENDING:
                at = o.at if o.available_at is None else o.available_at
                pending.append((at, o.error, o.traceback, 1 if o.undo_attempt else 0, o.job_id,
                                 o.attempt, owner))
                moved[2].append((o.queue, o.name, at))
            else:
                raise ValueError(f"an outcome's state is succeeded, failed or pending, "
                                 f"not {state!r}")
        if not (succeeded or failed or pending) and limit <= 0:
            return []
        return self._write("claiming and settling jobs", _exchange, (succeeded, failed, pending),
                           moved, owner, queues, limit, lease_expires, now)

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
            tally.move(RUNNING, PENDING, jobs)
            return len(jobs)
        return self._write("rescuing jobs", work)

    # -- queries and admin --------------------------------------------------
    def get(self, job_id: int) -> JobRecord | None:
        try:
            cursor = self.conn.execute(SQL["get"], (job_id,))
            row = cursor.fetchone()
        except sqlite3.Error as exc:
            raise explain(self.path, exc, f"reading job {job_id}") from exc
        return _decode(cursor, row) if row else None

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
            tally.add_all(FAILED, [(queue, name, None) for queue, name, _ in jobs], -1)
            tally.add_all(PENDING, jobs, 1)
            return len(jobs)
        return self._write("retrying failed jobs", work)

    def forget(self, job_id: int) -> bool:
        return self._write("forgetting a failed job", _delete, FAILED, SQL["forget"],
                           (job_id,)) > 0

    def flush_failed(self) -> int:
        return self._write("flushing failed jobs", _delete, FAILED, SQL["flush_failed"], ())

    def cancel(self, job_id: int, now: float) -> bool:
        def work(conn, tally):
            jobs = conn.execute(SQL["cancel"], (now, job_id)).fetchall()
            tally.move(PENDING, CANCELLED, jobs)
            return len(jobs)
        return self._write("cancelling a job", work) > 0

    def clear(self, queue: str) -> int:
        return self._write(f"clearing queue {queue!r}", _delete, PENDING, SQL["clear"], (queue,))

    # -- retention ------------------------------------------------------------
    def prune(self, before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        return self._write("pruning ended jobs", _delete, None, SQL["prune"], (before, limit))


def _decode(cursor: sqlite3.Cursor, row: tuple) -> JobRecord:
    return decode_record(dict(zip([c[0] for c in cursor.description], row)))


def _delete(conn: sqlite3.Connection, tally: Tally, state: str | None, sql: str,
            args: tuple) -> int:
    """Run a DELETE of jobs in `state` returning (queue, name[, available_at]) of each,
    or, when state is None, of jobs in any state returning (state, queue, name)."""
    n = 0
    if state is None:
        for (old, queue, name), k in Counter(conn.execute(sql, args)).items():
            tally.add(old, queue, name, None, -k)
            n += k
    else:
        for row, k in Counter(conn.execute(sql, args)).items():
            tally.add(state, row[0], row[1], row[2] if len(row) > 2 else None, -k)
            n += k
    return n


def _insert_bulk(conn: sqlite3.Connection, tally: Tally, rows: list[tuple]) -> list[int]:
    # Inside BEGIN IMMEDIATE nobody else inserts, and AUTOINCREMENT ids only
    # grow, so the rows above the old maximum are ours, in insertion order.
    before = conn.execute(SQL["max_id"]).fetchone()[0]
    conn.executemany(SQL["insert_job"], rows)
    ids = [row[0] for row in conn.execute(SQL["ids_after"], (before,))]
    assert len(ids) == len(rows), "concurrent insert inside a write transaction"
    tally.add_all(PENDING, [(row[0], row[1], row[5]) for row in rows], 1)
    return ids


def _insert_unique(conn: sqlite3.Connection, tally: Tally, rows: list[tuple]) -> list[int]:
    ids = []
    for row in rows:
        key = row[7]
        if key is not None:
            hit = conn.execute(SQL["find_unique"], (key,)).fetchone()
            if hit:
                ids.append(hit[0])
                continue
        ids.append(conn.execute(SQL["insert_job"], row).lastrowid)
        tally.add(PENDING, row[0], row[1], row[5], 1)
    return ids


def _claim_order(row: tuple):
    return (-row[6], row[7], row[0])


_SETTLES = ((SUCCEEDED, SQL["settle_succeeded"]), (FAILED, SQL["settle_failed"]),
            (PENDING, SQL["settle_pending"]))


def _settle(conn: sqlite3.Connection, tally: Tally, owner: str, settles: tuple, moved: tuple):
    """Settle the outcomes whose runs are still this owner's (a stale or repeated one
    changes nothing) and tally the jobs they move. `settles` holds the statements'
    arguments per state, each ending with (id, attempt, owner); `moved` the (queue, name,
    available_at) of each, as the outcomes say.

    Nearly always every outcome is current and names its job: then the settles run as
    they are, and the tally follows the outcomes. Otherwise they are undone and the
    current runs read first, which costs a row lookup per outcome."""
    if all(job[0] is not None for jobs in moved for job in jobs):
        conn.execute("SAVEPOINT settle")
        before = conn.total_changes
        for (_, sql), args in zip(_SETTLES, settles):
            if args:
                conn.executemany(sql, args)
        if conn.total_changes - before == sum(map(len, settles)):
            conn.execute("RELEASE settle")
            for (state, _), jobs in zip(_SETTLES, moved):
                if jobs:
                    tally.add_all(RUNNING, jobs, -1)
                    tally.add_all(state, jobs, 1)
            return
        conn.execute("ROLLBACK TO settle")
        conn.execute("RELEASE settle")
    ids = [args[-3] for args_of_state in settles for args in args_of_state]
    running = {row[0]: row[1:] for row in conn.execute(SQL["running_jobs"],
                                                       (orjson.dumps(ids), owner))}
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
            conn.executemany(sql, current)


def _exchange(conn, tally, settles, moved, owner, queues, limit, lease_expires, now):
    if any(settles):
        _settle(conn, tally, owner, settles, moved)
    claimed: list[ClaimedJob] = []
    if limit > 0:
        claim = SQL["claim"]
        for queue in queues:
            wanted = limit - len(claimed)
            if wanted <= 0:
                break
            rows = conn.execute(claim, (owner, lease_expires, now, queue, now, wanted)).fetchall()
            if len(rows) > 1:
                rows.sort(key=_claim_order)
            claimed.extend([ClaimedJob(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows])
            tally.move(PENDING, RUNNING, [(r[1], r[2], r[7]) for r in rows])
    return claimed
