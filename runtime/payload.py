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


def dump_payload(name: str, args, kwargs) -> bytes:
    """The stored form of a job's arguments: JSON `[args, kwargs]`."""
    if not isinstance(kwargs, dict):
        raise PayloadError(f"job {name}: kwargs must be a dict, got {type(kwargs).__name__}")
    return _dump([list(args), kwargs], f"job {name}: the arguments", plural=True)


def dump_result(value) -> bytes:
    """The stored form of a job's return value."""
    return _dump(value, "the job's result", plural=False) if value is not None else b"null"


def load(data: bytes):
    return orjson.loads(data)
