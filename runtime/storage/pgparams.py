"""Statement parameters for the PostgreSQL backend's batches.

A batch travels as one array per column (unnested by the SQL), so any number
of jobs or outcomes is one statement. This module turns domain tuples into
those arrays, and refuses, before anything reaches the server, what the
server would refuse half-way through a batch.
"""

from __future__ import annotations

from typing import Iterable

from runtime.errors import StorageError
from runtime.storage.base import CANCELLED, FAILED, PENDING, SUCCEEDED, NewJob, Outcome

BIGINT = (-(2 ** 63), 2 ** 63 - 1)


def check_jobs(jobs: list[NewJob], where: str) -> None:
    """Refuse a bad batch before it reaches the server: a sequence value, once
    drawn, is gone even when the transaction rolls back, and a refused batch
    should use no ids (as in SQLite)."""
    for n, j in enumerate(jobs):
        bad = None
        for field in ("queue", "name", "unique_key", "batch_id", "overlap_key", "rate_key"):
            value = getattr(j, field)
            if value is None and field not in ("queue", "name"):
                continue
            if not _is_text(value):
                bad = field
        if not isinstance(j.payload, (bytes, bytearray, memoryview)):
            bad = "payload"
        if j.options is not None and not isinstance(j.options, (bytes, bytearray, memoryview)):
            bad = "options"
        if not isinstance(j.available_at, (int, float)) or isinstance(j.available_at, bool):
            bad = "available_at"
        if not isinstance(j.priority, int) or not BIGINT[0] <= j.priority <= BIGINT[1]:
            bad = "priority"
        if bad:
            raise StorageError(f"{where}: job {n + 1} of the batch has an invalid {bad} "
                               f"({type(getattr(j, bad)).__name__}); nothing was enqueued")


def _is_text(value) -> bool:
    """A str PostgreSQL stores as text: no NUL, and UTF-8 (no lone surrogate)."""
    if not isinstance(value, str) or "\0" in value:
        return False
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _text(value: str | None) -> str | None:
    """Text PostgreSQL accepts: no NUL, no lone surrogate. An error message or a
    traceback with either must not make every later settle of its batch fail."""
    if value is None or value.isascii() and "\0" not in value:
        return value
    return value.replace("\0", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def as_bytes(value) -> bytes | None:
    return None if value is None else bytes(value)


# kind -> (statement, {column: value of one outcome}), in the order they run
_SETTLE = (
    (SUCCEEDED, "settle_succeeded", {"result": lambda o: as_bytes(o.result),
                                     "at": lambda o: float(o.at)}),
    (FAILED, "settle_failed", {"error": lambda o: _text(o.error),
                               "traceback": lambda o: _text(o.traceback),
                               "at": lambda o: float(o.at),
                               "exception": lambda o: 1 if o.exception else 0}),
    (PENDING, "settle_pending", {
        "available_at": lambda o: float(o.at if o.available_at is None else o.available_at),
        "error": lambda o: _text(o.error), "traceback": lambda o: _text(o.traceback),
        "undo": lambda o: 1 if o.undo_attempt else 0,
        "exception": lambda o: 1 if o.exception else 0,
        "at": lambda o: float(o.at)}),
    (CANCELLED, "settle_cancelled", {"error": lambda o: _text(o.error),
                                     "at": lambda o: float(o.at)}),
)


def settle_params(owner: str, outcomes: Iterable[Outcome]) -> list[tuple[str, dict]]:
    """Array parameters for the settle statements, one per kind present.

    Within one kind, only the first outcome of each (job, attempt) counts: a
    later duplicate is fenced out anyway, and one UPDATE must not meet a row
    twice. Rows go in id order, so two writers lock them in the same order.
    """
    kinds: dict[str, dict] = {kind: {} for kind, _, _ in _SETTLE}
    for o in outcomes:
        if o.state not in kinds:
            raise ValueError(f"an outcome's state is succeeded, failed, pending or "
                             f"cancelled, not {o.state!r}")
        kinds[o.state].setdefault((o.job_id, o.attempt), o)
    out = []
    for kind, name, columns in _SETTLE:
        if kinds[kind]:
            done = [kinds[kind][key] for key in sorted(kinds[kind])]
            params = {"owner": owner, "id": [o.job_id for o in done],
                      "attempt": [o.attempt for o in done]}
            params.update({column: [value(o) for o in done] for column, value in columns.items()})
            out.append((name, params))
    return out
