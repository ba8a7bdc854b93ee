"""A batch of calls of one function: the Pool's record of it (Batch), and what its
workers run (PoolFunction).

The Pool's functions live in a table its workers inherit when they fork, so
functions defined in the script's __main__, lambdas and closures all work;
only the calls travel: `(mode, items)` pickled, over the worker's private
pipe. A worker answers with `(values, failures, seconds)` pickled: a value
per call, and for each call that raised, its error, traceback and (when it
pickles) the exception itself. A call that raises never spoils its batch;
only a hang or a crash does, and the Pool then runs the batch one call at a
time to find the culprit.
"""

from __future__ import annotations

import pickle
import reprlib
import time
from typing import NamedTuple

from runtime import job_context
from runtime.errors import JobFailed
from runtime.options import JobOptions
from runtime.workers import protocol
from runtime.workers.child import describe, format_traceback

CALL_ONE = 0  # fn(item): map over one iterable
CALL_STAR = 1  # fn(*item): map over several iterables
CALL_ARGS = 2  # fn(*args, **kwargs), item = (args, kwargs): submit
MAX_BODY = protocol.MAX_FRAME - (1 << 16)  # what one frame may carry: a batch's calls or answers
PROTOCOL = pickle.HIGHEST_PROTOCOL

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


class BatchJob(NamedTuple):
    """Calls of a batch sent to one worker together, as the WorkerPool runs them: a job of
    the embedded Pool's own (it is never stored)."""

    id: int
    name: str  # the function's name in the workers' table
    payload: bytes  # (mode, items) pickled
    attempt: int
    options: JobOptions  # the timeout of the whole batch
    calls: int  # how many calls it carries: what it counts for max_jobs
    queue: str = "pool"
    overlap_key: None = None  # no gates: what retry_rules reads of every job
    rate_key: None = None
    context: None = None  # no workflow: what a RUN frame carries of every job


class Batch:
    """Calls of one function submitted together, and their answers so far."""

    __slots__ = ("sink", "seq", "name", "task", "mode", "items", "values", "failures", "remaining",
                 "keys", "calls", "per_call", "delivered")

    def __init__(self, sink, seq: int, name: str, task: str, mode: int, items: list):
        self.sink = sink  # .start() -> still wanted?, .deliver(batch), .abort(error), .cancelled
        self.seq = seq
        self.name = name  # the function's name in the worker's table
        self.task = task  # module:qualname, for messages and the record
        self.mode = mode
        self.items = items
        self.values: list = [None] * len(items)
        self.failures: dict[int, JobFailed] = {}
        self.remaining = len(items)
        self.keys: list | None = None  # record keys and readable arguments JSON, with storage=
        self.calls: list | None = None
        self.per_call: float | None = None  # seconds one call took, measured on the whole batch
        self.delivered = False

    def describe(self, offset: int) -> str:
        item = self.items[offset]
        if self.mode == CALL_ONE:
            shown = _short.repr(item)
        elif self.mode == CALL_STAR:
            shown = ", ".join(map(_short.repr, item))
        else:
            shown = ", ".join([*map(_short.repr, item[0]),
                               *(f"{k}={_short.repr(v)}" for k, v in item[1].items())])
        return f"{self.task}({shown})"


class PoolFunction:
    """A function in the Pool's table; `invoke` runs in the worker."""

    __slots__ = ("func",)

    def __init__(self, func):
        self.func = func

    def invoke(self, payload: bytes) -> bytes:
        mode, items = pickle.loads(payload)
        func = self.func
        values: list = []
        failures: dict[int, tuple] = {}
        started = time.perf_counter()
        for index, item in enumerate(items):
            try:
                if mode == CALL_ONE:
                    values.append(func(item))
                elif mode == CALL_STAR:
                    values.append(func(*item))
                else:
                    values.append(func(*item[0], **item[1]))
            except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too
                values.append(None)
                failures[index] = failure_of(exc)
        return encode(values, failures, time.perf_counter() - started)


def failure_of(exc: BaseException) -> tuple:
    """(error, traceback, pickled exception or None, retry?, fixed delay or None)."""
    if isinstance(exc, job_context.Fail):
        return exc.reason, None, None, False, None
    if isinstance(exc, job_context.Release):
        return "the task released itself", None, None, True, exc.delay
    try:
        pickled = pickle.dumps(exc, PROTOCOL)
    except BaseException:  # noqa: BLE001 - the text and traceback still say what happened
        pickled = None
    return describe(exc), format_traceback(exc), pickled, True, None


def encode(values: list, failures: dict, seconds: float) -> bytes:
    try:
        body = pickle.dumps((values, failures, seconds), PROTOCOL)
    except BaseException:  # noqa: BLE001 - find the values that do not pickle
        for index, value in enumerate(values):
            try:
                pickle.dumps(value, PROTOCOL)
            except BaseException as exc:  # noqa: BLE001
                values[index] = None
                failures[index] = (f"its result could not be pickled: {describe(exc)}",
                                   None, None, False, None)
        body = pickle.dumps((values, failures, seconds), PROTOCOL)
    if len(body) <= MAX_BODY:
        return body
    for index, value in enumerate(values):
        size = len(pickle.dumps(value, PROTOCOL))
        if size > MAX_BODY // 2:
            values[index] = None
            failures[index] = (f"its result is {size / 1048576:.0f} MiB pickled, more than a worker "
                               f"may send back ({MAX_BODY // 2 / 1048576:.0f} MiB): write it to a "
                               "file and return the path", None, None, False, None)
    body = pickle.dumps((values, failures, seconds), PROTOCOL)
    if len(body) > MAX_BODY:
        raise ValueError("the results of this batch are too large together; run one at a time")
    return body


def decode(body: bytes) -> tuple[list, dict, float]:
    return pickle.loads(body)
