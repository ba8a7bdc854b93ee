"""Job arguments and results as JSON, checked before they are stored.

orjson quietly turns NaN and Infinity into null; we refuse them instead, so a
job never receives different arguments from the ones it was given. Integers
beyond 64 bits, lone surrogates and nesting deeper than orjson allows are
refused by orjson itself; we turn its message into one that names the job.

Limits (documented in README.md): arguments and results are each at most
MAX_PAYLOAD bytes of JSON. Queues carry references to big data, not the data.
"""

from __future__ import annotations

import math

import orjson

from runtime.errors import PayloadError

MAX_PAYLOAD = 1024 * 1024
_SEQUENCES = (tuple, list)
_SHORT = 512  # bytes: what CPython's small-object allocator serves

_JSON_HINT = "use JSON types: str, int (64-bit), finite float, bool, None, list, dict with str keys"


def _non_finite(value, depth: int = 0) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if depth > 300:
        return False  # orjson refuses this depth anyway
    if isinstance(value, (list, tuple)):
        return any(_non_finite(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return any(_non_finite(item, depth + 1) for item in value.values())
    return False


def _dump(value, what: str, plural: bool) -> bytes:
    contain, are = ("contain", "are") if plural else ("contains", "is")
    try:
        data = orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        if _non_finite(value):  # the same message whichever of the two orjson met first
            raise PayloadError(f"{what} {contain} NaN or Infinity, which JSON cannot carry; {_JSON_HINT}") from None
        raise PayloadError(f"{what} cannot be stored as JSON ({exc}); {_JSON_HINT}") from None
    # orjson writes NaN and Infinity as null: only a document with a null can hold one, so
    # the walk over the value (a third of enqueue_many's time) is skipped for the others.
    if b"null" in data and _non_finite(value):
        raise PayloadError(f"{what} {contain} NaN or Infinity, which JSON cannot carry; {_JSON_HINT}")
    if len(data) > MAX_PAYLOAD:
        raise PayloadError(
            f"{what} {are} {len(data)} bytes of JSON, over the {MAX_PAYLOAD} byte limit; "
            "store large data elsewhere and pass a reference (a path or a key)")
    return data


def _compact(data: bytes) -> bytes:
    """A short document copied into a bytes of its own size. orjson writes into a buffer of
    about 1 KiB and shrinks it in place; kept by the hundred thousand (enqueue_many), those
    shrunk buffers left the heap in holes: 100k jobs' arguments grew the process by 390 MiB
    and took 2 us each in page faults, where the copies take 5 MiB and 0.1 us."""
    return bytes(memoryview(data)) if len(data) <= _SHORT else data


def dump_payload(name: str, args, kwargs) -> bytes:
    """The stored form of a job's arguments: JSON `[args, kwargs]`."""
    if type(kwargs) is dict and type(args) in _SEQUENCES:
        # The usual arguments, dumped as they are (orjson writes a tuple as a list): no
        # list built per job. Anything this does not pass goes the long way, which says why.
        try:
            data = orjson.dumps((args, kwargs))
        except TypeError:
            pass
        else:
            if b"null" not in data and len(data) <= MAX_PAYLOAD:
                return _compact(data)
    if not isinstance(kwargs, dict):
        raise PayloadError(f"job {name}: kwargs must be a dict, got {type(kwargs).__name__}")
    return _compact(_dump([list(args), kwargs], f"job {name}: the arguments", plural=True))


def dump_result(value) -> bytes:
    """The stored form of a job's return value."""
    return _dump(value, "the job's result", plural=False) if value is not None else b"null"


def load(data: bytes):
    return orjson.loads(data)
