"""The worker's side of runtime.events: the hooks it runs around a run, and for runs that
ended without a worker (EVENT frames).

    RUN frame with events: [after_operator_retry] -> before_run -> the job
                           -> after_success | after_exception -> after_failure
    EVENT frame:           after_failure (a run killed or lost on its last try)

Only a RUN frame of the longer kind (protocol.run_frame_with_events) has hooks around
it: the supervisor sends it when its job modules register hooks, and says in it what
an exception or a release would mean for the job, so a worker never guesses the
supervisor's rules (tries, max_exceptions, retry_until).
"""

from __future__ import annotations

import sys

import orjson

from runtime import events
from runtime.events import Hooks, JobEvent
from runtime.workers import protocol


def before(hooks: Hooks, header: list, payload: bytes) -> None:
    retried_at = header[6]
    if retried_at is not None and hooks.after_operator_retry:
        events.fire(hooks.after_operator_retry, _event(events.AFTER_OPERATOR_RETRY, header, payload,
                                                       retried_at=retried_at))
    if hooks.before_run:
        events.fire(hooks.before_run, _event(events.BEFORE_RUN, header, payload))


def after(hooks: Hooks, header: list, payload: bytes, status: str, body: bytes) -> None:
    """The hooks of how the run ended (its DONE status and body)."""
    error_end, release_end = header[4], header[5]
    if status == protocol.OK:
        if hooks.after_success:
            events.fire(hooks.after_success, _event(events.AFTER_SUCCESS, header, payload,
                                                    result=orjson.loads(body)))
    elif status == protocol.ERROR:
        error, tb = protocol.parse_error(body)
        if hooks.after_exception:
            events.fire(hooks.after_exception, _event(events.AFTER_EXCEPTION, header, payload, error=error,
                                                      traceback=tb, will_retry=error_end is None))
        if error_end is not None and hooks.after_failure:
            events.fire(hooks.after_failure, _event(events.AFTER_FAILURE, header, payload,
                                                    error=error + error_end, traceback=tb))
    elif status == protocol.FAIL:
        if hooks.after_failure:
            events.fire(hooks.after_failure, _event(events.AFTER_FAILURE, header, payload,
                                                    error=protocol.parse_error(body)[0]))
    elif status == protocol.RELEASE and release_end is not None and hooks.after_failure:
        events.fire(hooks.after_failure, _event(events.AFTER_FAILURE, header, payload, error=release_end))
    flush_output()


def notify(hooks: Hooks, notices: list) -> None:
    """Run the hooks of EVENT frames, (header, payload) each, oldest first."""
    by_event = hooks._asdict()
    for (event, job_id, attempt, name, queue, error), payload in notices:
        chosen = by_event.get(event, ())
        if chosen:
            events.fire(chosen, _event(event, (job_id, attempt, name, queue), payload, error=error))
    notices.clear()
    flush_output()


def _event(event: str, header, payload: bytes, **more) -> JobEvent:
    """The record of the run a RUN (or EVENT) header names, its arguments decoded anew for
    each event: a hook that changes them changes nothing for the next event's hooks."""
    try:
        args, kwargs = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError, ValueError):  # not [args, kwargs]: never run as such
        args, kwargs = [], {}
    return JobEvent(event, header[0], header[2], header[3], args, kwargs, header[1], **more)


def flush_output() -> None:
    """What hooks printed leaves before the result does, and is labelled with this job."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - a job may have closed or replaced them
            pass
