"""The record of a resumable Pool run: which calls succeeded, with their results.

`Pool(storage="sqlite:///run.db")` keeps one row per call, keyed by the
function's name and a canonical encoding of the call's arguments that keeps
their types (a tuple is not a list, bytes are not str, 1 is not 1.0 nor True),
so running the script again skips the calls that succeeded in an earlier run
(their recorded result comes back instead) and runs the rest, whatever order
the inputs come in. Within one run every call runs, even one whose twin has
already succeeded in it. Results are written in batches, a few times a second:
a call that succeeded in the last moments before a crash runs again (at least
once, never lost).

Only JSON goes to disk, never pickle: a record file is data, not code.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime
import decimal
import enum
import fcntl
import hashlib
import logging
import os
import sqlite3
import time
import uuid

import orjson

from runtime.embedded.batches import CALL_ARGS, CALL_ONE
from runtime.errors import JobrtError, PayloadError, StorageError
from runtime.storage import sqlite_path

log = logging.getLogger("jobrt")

FLUSH_EVERY = 0.2  # seconds between writes of recorded results
FLUSH_ROWS = 2000
LOOKUP_BATCH = 500  # keys per query (SQLite's parameter limit is higher; this keeps queries short)
SUCCEEDED, RAN, FAILED = "succeeded", "ran", "failed"  # RAN: succeeded, result not JSON: runs again

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobrt_pool_calls (
    key BLOB PRIMARY KEY,      -- blake2b of the task name and the arguments' typed encoding
    task TEXT NOT NULL,        -- module:qualname of the function
    args TEXT NOT NULL,        -- [args, kwargs] as readable JSON (not the identity: the key is)
    state TEXT NOT NULL,       -- succeeded | ran | failed
    result TEXT,               -- JSON, when succeeded
    error TEXT,
    traceback TEXT,
    attempts INTEGER NOT NULL,
    finished_at REAL NOT NULL,
    run INTEGER NOT NULL DEFAULT 0  -- which run wrote it: a run skips only what earlier runs did
) WITHOUT ROWID;
"""

_UPSERT = ("INSERT INTO jobrt_pool_calls (key, task, args, state, result, error, traceback, attempts, "
           "finished_at, run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
           "args = excluded.args, state = excluded.state, result = excluded.result, error = excluded.error, "
           "traceback = excluded.traceback, attempts = excluded.attempts, "
           "finished_at = excluded.finished_at, run = excluded.run")


def _jsonable(value):
    """What orjson cannot encode by itself but results and readable arguments often hold."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _readable(value):
    """What the args column shows of a value orjson cannot write: readable, not exact."""
    if isinstance(value, tuple):  # a namedtuple
        return list(value)
    if isinstance(value, (decimal.Decimal, complex)):
        return str(value)
    return _jsonable(value)


# -- the key: a canonical encoding of a call's arguments that keeps their types ---------------
#
# It is JSON text in which str, bool, None, ints that fit 64 bits, finite floats and lists stand
# for themselves (orjson writes a float always with "." or "e", and -0.0 as "-0.0", so none of
# them reads as another), and every other value is an object of one member that names its type:
# {"tuple": [...]}, {"bytes": base64}, {"dict": {...}} or {"dict": [[key, value], ...]},
# {"set": [...]}, {"path": [type, text]}, {"int": "digits"}, {"float": "nan"}, ... A plain dict
# never appears as itself, so an object is always such a tag, and the encoding is one-to-one:
# two calls share it exactly when their arguments are equal and of the same types, all the way
# down. Sets, and dicts with keys that are not all str, are ordered by their members' encodings.

KEY_VERSION = b"2\0"  # in every key: records written with another encoding are simply not found
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what orjson writes as a JSON integer
_SORTED = orjson.OPT_SORT_KEYS
_READABLE = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_PATHLIB = ("pathlib", "pathlib._local")
_NO_KWARGS: dict = {}
_TIMES = {datetime.datetime: "datetime", datetime.time: "time"}

WHAT_KEYS = ("str, bytes, int, float, bool, None, paths, enums, dates, times, UUIDs, Decimals, "
             "numpy arrays, and lists, tuples, dicts, sets and frozensets of them")


class _Unkeyable(Exception):
    def __init__(self, value, advice: str):
        super().__init__(value)
        self.type_name = _type_name(type(value))
        self.advice = advice


def _type_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", *_PATHLIB) else f"{module}.{cls.__qualname__}"


def _plain(value) -> bool:
    """Is this argument its own key (and its own readable JSON)?"""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return _INT_MIN <= value <= _INT_MAX
    if kind is float:
        return value - value == 0.0  # finite: inf - inf and nan - nan are nan
    return False


def _canonical(encoded) -> bytes:
    return orjson.dumps(encoded, option=_SORTED)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _has_surrogates(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _encoder(careful: bool):
    """The typed encoding as a function. orjson refuses str with lone surrogates (os.fsdecode
    makes them from undecodable file names); the careful encoder, used when it did, tags those
    strings. For every value without such strings, both return the same."""

    def typed(value):
        kind = type(value)
        if kind is str:
            if careful and _has_surrogates(value):
                return {"str": _b64(value.encode("utf-8", "surrogatepass"))}
            return value
        if kind is bool or value is None:
            return value
        if kind is int:
            return value if _INT_MIN <= value <= _INT_MAX else {"int": str(value)}
        if kind is float:
            if value - value == 0.0:
                return value
            return {"float": "nan" if value != value else "inf" if value > 0 else "-inf"}
        if kind is list:
            return [typed(item) for item in value]
        encode = encoders.get(kind)
        return encode(value) if encode is not None else other(value)

    def members(values) -> list:
        """A set's members, or a dict's keys, in one canonical order."""
        kinds = set(map(type, values))
        if kinds == {str} or kinds == {int}:  # the common cases, ordered as themselves
            return [typed(item) for item in sorted(values)]
        encoded = [typed(item) for item in values]
        encoded.sort(key=_canonical)  # members with one encoding (NaNs) are alike in any order
        return encoded

    def mapping(value: dict) -> dict:
        if all(type(key) is str and not (careful and _has_surrogates(key)) for key in value):
            return {"dict": {key: typed(item) for key, item in value.items()}}
        pairs = [[typed(key), typed(item)] for key, item in value.items()]
        pairs.sort(key=_canonical)
        return {"dict": pairs}

    def other(value):
        kind = type(value)
        if isinstance(value, os.PathLike):
            return {"path": [_type_name(kind), typed(os.fspath(value))]}
        if isinstance(value, enum.Enum):
            return {"enum": [_type_name(kind), value.name]}
        if kind.__module__ == "numpy":
            return numpy(value)
        if isinstance(value, tuple) and hasattr(kind, "_fields"):  # a namedtuple
            return {"namedtuple": [_type_name(kind), [typed(item) for item in value]]}
        for base in (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset):
            if isinstance(value, base):
                raise _Unkeyable(value, f"pass {base.__name__}(value), or the fields the call needs")
        if dataclasses.is_dataclass(value):
            raise _Unkeyable(value, "pass dataclasses.asdict(value), or the fields the call needs")
        raise _Unkeyable(value, f"pass the fields the call needs as {WHAT_KEYS}, or a file path")

    def numpy(value):
        dtype = getattr(value, "dtype", None)
        if dtype is None or dtype.kind in "OV":  # objects, records: their bytes are not their value
            raise _Unkeyable(value, "pass value.tolist(), or a file path")
        if type(value).__name__ == "ndarray":
            return {"ndarray": [dtype.str, list(value.shape), _b64(value.tobytes(order="C"))]}
        if getattr(value, "shape", None) == () and hasattr(value, "tobytes"):  # numpy.float64(1.0)...
            return {"numpy": [dtype.str, _b64(value.tobytes())]}
        raise _Unkeyable(value, "pass numpy.asarray(value), value.tolist(), or a file path")

    def timestamp(value):
        tz = value.tzinfo
        return {_TIMES[type(value)]: [value.isoformat(), None if tz is None else repr(tz)]}

    encoders = {
        tuple: lambda value: {"tuple": [typed(item) for item in value]},
        dict: mapping,
        set: lambda value: {"set": members(value)},
        frozenset: lambda value: {"frozenset": members(value)},
        bytes: lambda value: {"bytes": _b64(value)},
        bytearray: lambda value: {"bytearray": _b64(value)},
        complex: lambda value: {"complex": [typed(value.real), typed(value.imag)]},
        datetime.date: lambda value: {"date": value.isoformat()},
        datetime.datetime: timestamp,
        datetime.time: timestamp,
        datetime.timedelta: lambda value: {"timedelta": [value.days, value.seconds, value.microseconds]},
        decimal.Decimal: lambda value: {"decimal": str(value)},
        uuid.UUID: lambda value: {"uuid": str(value)},
    }
    return typed


_typed, _typed_carefully = _encoder(False), _encoder(True)


def _split(mode: int, item) -> tuple[tuple, dict]:
    if mode == CALL_ONE:
        return (item,), {}
    if mode == CALL_ARGS:
        return tuple(item[0]), item[1]
    return tuple(item), {}


def call_key(mode: int, item) -> tuple[bytes, bytes]:
    """A call's arguments as (their typed canonical encoding, readable JSON `[args, kwargs]`):
    the first makes the record's key, the second is what the record shows (often the same
    bytes). The same call gets the same encoding whether it was submitted or mapped. Raises
    PayloadError, naming the argument, for arguments that cannot be keyed faithfully."""
    if mode == CALL_ONE and _plain(item):  # map over strings or numbers: the cheapest case
        try:
            typed = orjson.dumps(((item,), _NO_KWARGS))
            return typed, typed
        except orjson.JSONEncodeError:
            pass  # a str with lone surrogates: the careful encoder says how
    args, kwargs = _split(mode, item)
    if all(map(_plain, args)) and all(map(_plain, kwargs.values())):
        try:
            typed = orjson.dumps((args, kwargs), option=_SORTED)
            return typed, typed
        except orjson.JSONEncodeError:
            pass
    try:
        try:
            typed = orjson.dumps([[_typed(a) for a in args], {k: _typed(v) for k, v in kwargs.items()}],
                                 option=_SORTED)
        except orjson.JSONEncodeError:
            typed = orjson.dumps([[_typed_carefully(a) for a in args],
                                  {k: _typed_carefully(v) for k, v in kwargs.items()}], option=_SORTED)
    except _Unkeyable:
        raise _refusal(args, kwargs) from None
    except RecursionError:
        raise PayloadError("with storage=, a call is recorded under a key made from its arguments, and "
                           "these are nested too deeply (or contain themselves) to key") from None
    except orjson.JSONEncodeError as exc:  # a keyword's name with lone surrogates
        raise PayloadError(f"with storage=, this call's arguments cannot be keyed ({exc})") from None
    try:
        readable = orjson.dumps((args, kwargs), default=_readable, option=_READABLE)
    except (TypeError, orjson.JSONEncodeError):  # huge ints, tuple keys, surrogates: show the key
        readable = typed
    return typed, readable


def _refusal(args: tuple, kwargs: dict) -> PayloadError:
    """The PayloadError for arguments one of which cannot be keyed: which one, and why."""
    named = [(f"argument {n}" if len(args) > 1 or kwargs else "the argument", value)
             for n, value in enumerate(args, 1)] + [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for where, value in named:
        try:
            _typed_carefully(value)
        except _Unkeyable as exc:
            outer = _type_name(type(value))
            what = f"is of type {outer}" if exc.type_name == outer else \
                f"(of type {outer}) holds a value of type {exc.type_name}"
            return PayloadError(
                f"with storage=, a call is recorded under a key made from its arguments and their types, "
                f"and {where} {what}, which cannot be keyed faithfully: {exc.advice}")
    return PayloadError("with storage=, this call's arguments cannot be keyed faithfully")


class RunRecord:
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
        self.run = 1 + int.from_bytes(os.urandom(7), "big")  # this run's rows: never skipped by it
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
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(jobrt_pool_calls)")}
            if "run" not in columns:  # a record from before runs were told apart
                self.db.execute("ALTER TABLE jobrt_pool_calls ADD COLUMN run INTEGER NOT NULL DEFAULT 0")
        except sqlite3.Error as exc:
            os.close(self.lock_fd)
            raise JobrtError(f"Pool(storage=...): {self.path} is not a usable run record ({exc}); "
                             "was it written by something else?") from None

    @staticmethod
    def key(task: str, typed: bytes) -> bytes:
        """The record's key of a call of `task` whose arguments encode (call_key) as `typed`."""
        return hashlib.blake2b(KEY_VERSION + task.encode() + b"\0" + typed, digest_size=16).digest()

    def lookup(self, keys: list[bytes]) -> dict[bytes, bytes]:
        """{key: result JSON} of the calls among `keys` that succeeded in an earlier run."""
        found = {}
        for start in range(0, len(keys), LOOKUP_BATCH):
            part = keys[start:start + LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            found.update(self.db.execute(
                f"SELECT key, result FROM jobrt_pool_calls WHERE state = 'succeeded' AND run != ? "
                f"AND key IN ({marks})", [self.run, *part]).fetchall())
        return found

    def succeeded(self, key: bytes, task: str, args: bytes, value, attempts: int) -> None:
        try:
            result = orjson.dumps(value, default=_jsonable, option=orjson.OPT_SERIALIZE_NUMPY).decode()
            state = SUCCEEDED
        except (TypeError, orjson.JSONEncodeError) as exc:
            result, state = None, RAN
            if task not in self.warned_unjson:
                self.warned_unjson.add(task)
                log.warning("pool: a result of %s is not JSON (%s), so it is not recorded and a resumed "
                            "run runs that call again; return JSON types to let it be skipped", task, exc)
        self.rows.append((key, task, args.decode(), state, result, None, None, attempts, time.time(), self.run))

    def failed(self, key: bytes, task: str, args: bytes, error: str, tb: str | None, attempts: int) -> None:
        self.rows.append((key, task, args.decode(), FAILED, None, error, tb, attempts, time.time(), self.run))

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
