"""runtime.events hooks and a few jobs to watch them, for tests/integration/test_events.py.

List this module in `[jobs] modules` (beside jobs.examples) and every job of that
supervisor gets the hooks below: each appends what it saw, one JSON line, to the
file named by the JOBRT_EVENTS_LOG environment variable (nothing when it is unset).
A job enqueued with the keyword `hooks_raise=True` makes the raising hooks raise.
"""

import dataclasses
import json
import os
import time

from runtime import events, fail, job, release

LOG = "JOBRT_EVENTS_LOG"


def _write(hook: str, event: events.JobEvent) -> None:
    path = os.environ.get(LOG)
    if path:
        line = json.dumps({"hook": hook, "pid": os.getpid(), **dataclasses.asdict(event)}) + "\n"
        with open(path, "a") as out:
            out.write(line)  # one write of one line: workers append to one file


def _raise_if_asked(event: events.JobEvent) -> None:
    if event.kwargs.get("hooks_raise"):
        raise RuntimeError(f"this {event.event} hook raises")


@events.before_run
def first_before(event):
    _write("first_before", event)


events.before_run(_raise_if_asked)  # registered between the two: they run in this order


@events.before_run
def second_before(event):
    _write("second_before", event)


events.after_success(lambda event: _write("after_success", event))  # any callable will do


@events.after_exception
def exception_seen(event):
    _write("after_exception", event)


events.after_failure(_raise_if_asked)


@events.after_failure
def failure_seen(event):
    _write("after_failure", event)


@events.after_operator_retry
def operator_retry_seen(event):
    _write("after_operator_retry", event)


@job
def succeed(value, hooks_raise: bool = False) -> dict:
    return {"value": value}


@job(tries=2, backoff=0)
def explode(hooks_raise: bool = False) -> None:
    raise RuntimeError("explode")


@job(tries=3)
def give_up() -> None:
    fail("given up")


@job(tries=2, backoff=0)
def release_always() -> None:
    release(0)


@job(tries=1)
def hang() -> None:
    time.sleep(3600)
