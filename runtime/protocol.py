"""Frames between the supervisor and its workers, one private pipe pair per worker.

    supervisor                                   worker
        | -- RUN  [job_id, attempt, name] + payload -->|   (several may be queued)
        | -- STOP -------------------------------------> |   run nothing more, hand back the rest
        | <-- DONE [job_id, attempt, status, secs, owned, delay, printed] + body
        | <-- BYE ---------------------------------------|   planned exit follows

A frame is a 4-byte big-endian length, then the body: one kind byte, a 4-byte
header length, an orjson header, and raw bytes. The payload and result bytes
pass through the supervisor undecoded: it never interprets user data.
"""

from __future__ import annotations

import struct

import orjson

RUN = 82  # b"R"
STOP = 83  # b"S"
DONE = 68  # b"D"
BYE = 66  # b"B"

# DONE statuses
OK = "ok"
ERROR = "error"
FAIL = "fail"
RELEASE = "release"
RETURNED = "returned"

MAX_FRAME = 64 * 1024 * 1024  # a frame larger than this means a broken peer

_LEN = struct.Struct(">I")
_HEAD = struct.Struct(">IBI")


class ProtocolError(Exception):
    """The peer sent bytes that are not a frame (a job scribbled on the pipe?)."""


def frame(kind: int, header: object = None, body: bytes = b"") -> bytes:
    head = orjson.dumps(header) if header is not None else b""
    return _HEAD.pack(5 + len(head) + len(body), kind, len(head)) + head + body


def run_frame(job_id: int, attempt: int, name: str, payload: bytes) -> bytes:
    return frame(RUN, (job_id, attempt, name), payload)


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
