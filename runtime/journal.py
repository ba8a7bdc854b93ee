"""The record of a resumable Pool run: which calls succeeded, with their results.

`Pool(storage="sqlite:///run.db")` keeps one row per call, keyed by the
function's name and the call's arguments as JSON, so running the script
again skips the calls that succeeded (their recorded result comes back
instead) and runs the rest, whatever order the inputs come in. Results are
written in batches, a few times a second: a call that succeeded in the last
moments before a crash runs again (at least once, never lost).

Only JSON goes to disk, never pickle: a record file is data, not code.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import sqlite3
import time

import orjson

from .errors import JobrtError, PayloadError, StorageError
from .pool_task import CALL_ARGS, CALL_ONE
from .storage import sqlite_path

log = logging.getLogger("jobrt")

FLUSH_EVERY = 0.2  # seconds between writes of recorded results
FLUSH_ROWS = 2000
LOOKUP_BATCH = 500  # keys per query (SQLite's parameter limit is higher; this keeps queries short)
SUCCEEDED, RAN, FAILED = "succeeded", "ran", "failed"  # RAN: succeeded, result not JSON: runs again

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobrt_pool_calls (
    key BLOB PRIMARY KEY,      -- blake2b of the task name and the arguments' JSON
    task TEXT NOT NULL,        -- module:qualname of the function
    args TEXT NOT NULL,        -- [args, kwargs] as JSON
    state TEXT NOT NULL,       -- succeeded | ran | failed
    result TEXT,               -- JSON, when succeeded
    error TEXT,
    traceback TEXT,
    attempts INTEGER NOT NULL,
    finished_at REAL NOT NULL
) WITHOUT ROWID;
"""

_UPSERT = ("INSERT INTO jobrt_pool_calls (key, task, args, state, result, error, traceback, attempts, "
           "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
           "state = excluded.state, result = excluded.result, error = excluded.error, "
           "traceback = excluded.traceback, attempts = excluded.attempts, finished_at = excluded.finished_at")


def _jsonable(value):
    """What orjson cannot encode by itself but a call's arguments often hold."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"{type(value).__name__} is not JSON")


def call_json(mode: int, item) -> bytes:
    """A call's arguments as canonical JSON `[args, kwargs]` (the same for submit and map)."""
    if mode == CALL_ONE:
        call = [[item], {}]
    elif mode == CALL_ARGS:
        call = [list(item[0]), item[1]]
    else:
        call = [list(item), {}]
    try:
        return orjson.dumps(call, default=_jsonable,
                            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise PayloadError(f"with storage=, a call's arguments are recorded as JSON, and these are not "
                           f"({exc}); pass strings, numbers, paths, lists or dicts") from None


class Journal:
    def __init__(self, url: str):
        url = os.fspath(url)
        if "://" not in url:
            url = "sqlite:///" + url
        if not url.startswith("sqlite://"):
            raise JobrtError(f"Pool(storage={url!r}): a pool records its runs in a SQLite file; "
                             "use sqlite:///PATH (relative to the current directory) or sqlite:////ABSOLUTE")
        try:
            self.path = sqlite_path(url)
        except StorageError as exc:
            raise JobrtError(f"Pool(storage=...): {exc}") from None
        self.rows: list[tuple] = []
        self.flushed_at = time.monotonic()
        self.warned_unjson: set[str] = set()
        try:
            self.lock_fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise JobrtError(f"Pool(storage=...): cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.lock_fd)
            raise JobrtError(f"Pool(storage=...): {self.path} is in use by another running pool; "
                             "let it finish, or give this run its own file") from None
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            os.close(self.lock_fd)
            raise JobrtError(f"Pool(storage=...): {self.path} is not a usable run record ({exc}); "
                             "was it written by something else?") from None

    @staticmethod
    def key(task: str, args_json: bytes) -> bytes:
        return hashlib.blake2b(task.encode() + b"\0" + args_json, digest_size=16).digest()

    def lookup(self, keys: list[bytes]) -> dict[bytes, bytes]:
        """{key: result JSON} of the calls among `keys` that already succeeded."""
        found = {}
        for start in range(0, len(keys), LOOKUP_BATCH):
            part = keys[start:start + LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            found.update(self.db.execute(
                f"SELECT key, result FROM jobrt_pool_calls WHERE state = 'succeeded' AND key IN ({marks})",
                part).fetchall())
        return found

    def succeeded(self, key: bytes, task: str, args_json: bytes, value, attempts: int) -> None:
        try:
            result = orjson.dumps(value, default=_jsonable, option=orjson.OPT_SERIALIZE_NUMPY).decode()
            state = SUCCEEDED
        except (TypeError, orjson.JSONEncodeError) as exc:
            result, state = None, RAN
            if task not in self.warned_unjson:
                self.warned_unjson.add(task)
                log.warning("pool: a result of %s is not JSON (%s), so it is not recorded and a resumed "
                            "run runs that call again; return JSON types to let it be skipped", task, exc)
        self.rows.append((key, task, args_json.decode(), state, result, None, None, attempts, time.time()))

    def failed(self, key: bytes, task: str, args_json: bytes, error: str, tb: str | None,
               attempts: int) -> None:
        self.rows.append((key, task, args_json.decode(), FAILED, None, error, tb, attempts, time.time()))

    def due(self) -> float:
        return self.flushed_at + FLUSH_EVERY if self.rows else float("inf")

    def flush(self, now: float, force: bool = False) -> None:
        if not self.rows or (not force and len(self.rows) < FLUSH_ROWS and now < self.due()):
            return
        rows, self.rows = self.rows, []
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany(_UPSERT, rows)
        except sqlite3.Error as exc:
            self.rows[:0] = rows  # kept: written at the next flush
            log.error("pool: cannot write the run record %s (%s); %d results wait in memory",
                      self.path, exc, len(self.rows))
        self.flushed_at = now

    def close(self) -> None:
        self.flush(time.monotonic(), force=True)
        self.db.close()
        os.close(self.lock_fd)
