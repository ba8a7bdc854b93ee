"""The SQLite backend's database file and schema: the file created with mode 0600 (or
required to exist), a connection configured (WAL, busy timeouts, sync level), foreign or
newer files refused, migrations applied; sqlite3 errors turned into one StorageError
naming the file and what to do. The SQL lives in `sqlite.sql`."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

from runtime.errors import StorageError
from runtime.storage import sqlfile

SQL = sqlfile.load(Path(__file__).with_name("sqlite.sql"))
MIGRATIONS = sqlfile.migrations(SQL)
SCHEMA_VERSION = MIGRATIONS[-1][0]
APPLICATION_ID = 0x6A6F6272  # 'jobr', set by migration_1
BUSY_TIMEOUT_S = 10
# A supervisor must not sit in SQLite's busy wait while deadlines pass: it gives up
# quickly, keeps its results in memory and retries from its event loop.
RUNNING_BUSY_TIMEOUT_MS = {"client": BUSY_TIMEOUT_S * 1000, "supervisor": 200}
SYNCHRONOUS = {"client": "FULL", "supervisor": "NORMAL"}

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


def create_file(path: str) -> None:
    """Create the parent directory and the file (mode 0600) unless present.

    Created by us rather than by SQLite, so the mode is 0600 from the first
    byte; SQLite gives its -wal and -shm files the database file's mode.
    """
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


def require_file(path: str) -> None:
    """For a client that must not create storage: the database file must exist."""
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


def connect(path: str, target: str, uri: bool, role: str) -> sqlite3.Connection:
    """A connection to `target` (the file at `path`), configured and migrated for `role`."""
    try:
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=uri)
    except sqlite3.Error as exc:
        raise explain(path, exc, "opening") from exc
    try:
        _prepare(conn, path, role)
        conn.execute(f"PRAGMA busy_timeout = {RUNNING_BUSY_TIMEOUT_MS[role]}")
    except BaseException:
        conn.close()
        raise
    return conn


def reconnect(path: str, target: str, uri: bool, role: str) -> sqlite3.Connection:
    """A connection again to a file `connect` opened, identified and migrated in this
    process: only the per-connection settings (WAL mode stays with the file)."""
    try:
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=uri)
        conn.execute(f"PRAGMA busy_timeout = {RUNNING_BUSY_TIMEOUT_MS[role]}")
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[role]}")
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.Error as exc:
        raise explain(path, exc, "opening") from exc
    return conn


def rows(cursor: sqlite3.Cursor) -> list[dict]:
    """The rows a query returned, as {column: value}."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the original error is the one worth reporting


def _prepare(conn: sqlite3.Connection, path: str, role: str) -> None:
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
            _configure(conn, path, role)
            _migrate(conn, path)
            return
        except sqlite3.OperationalError as exc:
            rollback(conn)
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code not in (5, 6) or time.monotonic() + pause > deadline:
                raise explain(path, exc, "opening") from exc
            time.sleep(pause)  # back off from a competing opener, not synchronisation
            pause = min(pause * 2, 0.05)
        except sqlite3.Error as exc:
            raise explain(path, exc, "opening") from exc


def _configure(conn: sqlite3.Connection, path: str, role: str) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
    # Identify before anything can write: journal_mode=WAL rewrites the
    # header, and a file that is not ours must stay byte-for-byte intact.
    _identify(conn, path)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise StorageError(f"SQLite database {path}: cannot switch to WAL mode "
                           f"(got {mode!r}); put the file on a local filesystem")
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[role]}")
    # A statement that fires a trigger (a batch member's settle) keeps a statement journal:
    # in a temporary file that cost each settle of a member as much as the rest of its
    # exchange; in memory, next to nothing.
    conn.execute("PRAGMA temp_store = MEMORY")


def _identify(conn: sqlite3.Connection, path: str) -> int:
    version, app_id, objects = conn.execute(SQL["identify"]).fetchone()
    foreign = (app_id != APPLICATION_ID) if version else objects > 0
    if foreign:
        raise StorageError(f"{path} is an SQLite database but not a jobrt one; jobrt "
                           f"left it untouched: point the storage url at another file")
    if version > SCHEMA_VERSION:
        raise StorageError(f"SQLite database {path} has schema version {version}, newer "
                           f"than this jobrt knows ({SCHEMA_VERSION}): upgrade jobrt")
    return version


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply missing migrations. Two processes may start at once: the second
    waits on BEGIN IMMEDIATE, then finds the version already current."""
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _identify(conn, path)
        for number, sql in MIGRATIONS:
            if number > version:
                for statement in sqlfile.statements(sql):
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
