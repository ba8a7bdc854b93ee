"""Frames between the supervisor and its workers, one private pipe pair per worker.

    supervisor                                   worker
        | -- RUN  [job_id, attempt, name] + payload -->|   (several may be queued)
        | -- RUN  [job_id, attempt, name, queue, error_end, release_end, retried_at] + payload -->|
        |         the same, when runtime.events hooks are on: what the run's end would mean
        |         (either with a job's context last, when it has one: run_context)
        | -- EVENT [event, job_id, attempt, name, queue, error] + payload -->|
        |         runtime.events hooks for a run that ended without its worker; run before the next job
        | -- STOP -------------------------------------> |   run nothing more, hand back the rest
        | <-- DONE [job_id, attempt, status, secs, owned, delay, printed] + body
        | <-- BYE ---------------------------------------|   planned exit follows
        | <-- BOOT [error] ------------------------------|   it could not start; exit follows

A frame is a 4-byte big-endian length, then the body: one kind byte, a 4-byte
header length, an orjson header, and raw bytes. The payload and result bytes
pass through the supervisor undecoded: it never interprets user data.
"""

from __future__ import annotations

import math
import struct
from collections import namedtuple

import orjson

from runtime.errors import JobrtError

RUN = 82  # b"R"
STOP = 83  # b"S"
EVENT = 69  # b"E": supervisor to worker only
DONE = 68  # b"D"
BYE = 66  # b"B"
BOOT = 88  # b"X": the worker failed before it could run anything; its error follows

# DONE statuses
OK = "ok"
ERROR = "error"
FAIL = "fail"
RELEASE = "release"
RETURNED = "returned"
STATUSES = frozenset((OK, ERROR, FAIL, RELEASE, RETURNED))

MAX_FRAME = 64 * 1024 * 1024  # a frame larger than this means a broken peer
MAX_ERROR = 4096  # characters of an error message kept: it is a one-line summary
MAX_TRACEBACK = 65536  # characters of a traceback kept, its start and its end

_LEN = struct.Struct(">I")
_HEAD = struct.Struct(">IBI")


class ProtocolError(JobrtError):
    """The peer sent bytes that are not a frame, or a frame whose fields make no sense
    (a job scribbled on the pipe, or forged a frame)."""


def frame(kind: int, header: object = None, body: bytes = b"") -> bytes:
    head = orjson.dumps(header) if header is not None else b""
    return _HEAD.pack(5 + len(head) + len(body), kind, len(head)) + head + body


def run_frame(job_id: int, attempt: int, name: str, payload: bytes, context=None) -> bytes:
    """A RUN frame; `context` (a job of a workflow: runtime.supervisor.run_context) last."""
    if context is None:
        return frame(RUN, (job_id, attempt, name), payload)
    return frame(RUN, (job_id, attempt, name, context), payload)


def run_frame_with_events(job_id: int, attempt: int, name: str, payload: bytes, queue: str,
                          error_end: str | None, release_end: str | None,
                          retried_at: float | None = None, context=None) -> bytes:
    """A RUN frame for a worker that runs runtime.events hooks. `error_end`: None when the
    job would be retried if this run raised, else what the supervisor would add to the error
    as it fails the job (" (attempt 3 of 3)"); `release_end`: None when a release would be
    retried, else the job's error if it released itself. The supervisor decides both by the
    rules it applies to the run's end (retry_rules), which the worker does not know.
    `retried_at`: when an operator retried the failed job, if this is its first run since."""
    header = (job_id, attempt, name, queue, error_end, release_end, retried_at)
    return frame(RUN, header if context is None else header + (context,), payload)


def event_frame(event: str, job_id: int, attempt: int, name: str, queue: str, error: str | None,
                payload: bytes) -> bytes:
    """An EVENT frame: a worker runs the hooks of `event` for a run that ended without one."""
    return frame(EVENT, (event, job_id, attempt, name, queue, error), payload)


# A DONE frame's header: how one run ended (a namedtuple: workers are cloned without typing).
Done = namedtuple("Done", (
    "job_id",
    "attempt",
    "status",  # one of STATUSES
    "seconds",  # how long the job ran, a float
    "owned",  # bytes the worker owned afterwards (0: not measured)
    "delay",  # seconds, with RELEASE
    "printed",  # bool: output waits in the worker's output pipe
))


def done_frame(done: Done, body: bytes = b"") -> bytes:
    return frame(DONE, tuple(done), body)  # orjson takes a plain tuple, not a namedtuple


def _count(value) -> bool:
    return type(value) is int and value >= 0


def _seconds(value) -> bool:
    return type(value) is float and math.isfinite(value) and value >= 0 \
        or type(value) is int and 0 <= value <= 2**53


def parse_done(header) -> Done:
    """The header of a DONE frame, checked field by field: whatever a job managed to send,
    a malformed value becomes a ProtocolError (that run's failure), never the supervisor's."""
    if type(header) is not list or len(header) != len(Done._fields):
        raise ProtocolError(f"a result header of {_shape(header)}, not {len(Done._fields)} fields")
    done = Done(*header)
    if not (_count(done.job_id) and _count(done.attempt) and type(done.status) is str and done.status in STATUSES
            and _seconds(done.seconds) and _count(done.owned) and _seconds(done.delay)
            and type(done.printed) is bool):
        raise ProtocolError(f"a malformed result header {str(header)[:200]}")
    return done


def is_json(data: bytes) -> bool:
    """Whether `data` is one JSON document (a result as a worker sends it)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def clean_text(text: str, limit: int) -> str:
    """Text a job produced (an exception's message, a traceback) made safe to store: lone
    surrogates (file names from os.listdir) escaped, since JSON and UTF-8 cannot carry
    them, and the middle of an over-long text cut out, keeping where it starts and ends."""
    if len(text) > limit:
        keep = limit // 2
        text = f"{text[:keep]} [... {len(text) - 2 * keep} characters cut ...] {text[-keep:]}"
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode()
    return text


def error_body(error: str, tb: str | None) -> bytes:
    """The body of an ERROR or FAIL result."""
    return orjson.dumps({"error": clean_text(error, MAX_ERROR),
                         "traceback": None if tb is None else clean_text(tb, MAX_TRACEBACK)})


def parse_error(body: bytes) -> tuple[str, str | None]:
    """(error, traceback) from the body of an ERROR or FAIL result."""
    try:
        error = orjson.loads(body)
    except orjson.JSONDecodeError:
        error = None
    if type(error) is not dict or type(error.get("error")) is not str \
            or type(error.get("traceback")) not in (str, type(None)):
        raise ProtocolError(f"an unreadable error report ({len(body)} bytes)")
    return error["error"], error["traceback"]


def _shape(header) -> str:
    return f"{len(header)} fields" if type(header) is list else type(header).__name__


STOP_FRAME = frame(STOP)
BYE_FRAME = frame(BYE)


class FrameReader:
    """Accumulates bytes from a pipe and splits them into (kind, header, body)."""

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, object, bytes]]:
        buf = self.buf
        buf += data
        frames = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size < 5 or size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes")
            if end - pos - 4 < size:
                break
            kind = buf[pos + 4]
            (hlen,) = _LEN.unpack_from(buf, pos + 5)
            start = pos + 9
            if hlen > size - 5:
                raise ProtocolError(f"header of {hlen} bytes in a frame of {size}")
            try:
                header = orjson.loads(buf[start:start + hlen]) if hlen else None
            except orjson.JSONDecodeError as exc:
                raise ProtocolError(f"unreadable header: {exc}") from None
            frames.append((kind, header, bytes(buf[start + hlen:pos + 4 + size])))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return frames
