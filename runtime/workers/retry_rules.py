"""Turning how a run ended into the Outcome storage records: retry, fail, succeed.

Pure functions of the job, its options and the pool's settings, so the rules
(tries, backoff, retry_until) are testable without processes.
"""

from __future__ import annotations

import os

from runtime.backoff import backoff_delay
from runtime.options import JobOptions
from runtime.storage.base import CANCELLED, FAILED, PENDING, SUCCEEDED, ClaimedJob, Outcome

# Outcome.reason: how a failed run ended
ERROR = "error"  # the job raised
TIMEOUT = "timeout"  # it overran its timeout and its worker was killed
MEMORY = "memory"  # its worker passed memory_limit_mb and was killed
SIGNAL = "signal"  # its worker was killed by a signal (a segfault, the OOM killer)
CRASH = "crash"  # its worker exited or broke its pipes without reporting a result

RELEASED_LAST = "the job released itself on its last try"

# (worker status, resulting job state) -> the outcome counted in metrics
_COUNTED = {
    ("ok", SUCCEEDED): "succeeded", ("release", PENDING): "released", ("release", FAILED): "failed",
    ("fail", FAILED): "failed", ("error", FAILED): "failed", ("error", PENDING): "retried",
}


def reported(run, pool, status: str, body: bytes, error: str | None, tb: str | None, delay: float,
             at: float) -> tuple[Outcome, str]:
    """The Outcome of a run its worker reported (ok, release, fail, error), and the outcome
    counted in metrics."""
    job, options = run.job, run.options
    if status == "ok":
        outcome = succeeded(job, body, at)
    elif status == "release":
        outcome = released(job, options, pool, delay, at)
    elif status == "fail":
        outcome = failed(job, error, at)
    else:
        outcome = errored(job, options, pool, error, tb, at)
    return outcome, _COUNTED[status, outcome.state]


def lost(run, pool, status: int, how: str, crash_code: int, at: float) -> Outcome:
    """The Outcome of a run whose worker died without reporting it (`how` it ended, as
    process.describe_exit says): retried while tries remain."""
    error = f"the worker {how} while running the job"
    if status == 0:
        error += " without reporting a result (did the job call os._exit?)"
    elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == crash_code:
        error += " (its loop failed: did the job close or write to the worker's pipes?)"
    reason = SIGNAL if os.WIFSIGNALED(status) else CRASH
    return errored(run.job, run.options, pool, error, None, at, reason)


def _outcome(job: ClaimedJob, state: str, at: float, **details) -> Outcome:
    return Outcome(job.id, job.attempt, state, at, queue=job.queue, name=job.name,
                   overlap_key=job.overlap_key, rate_key=job.rate_key, **details)


def succeeded(job: ClaimedJob, result: bytes, at: float) -> Outcome:
    return _outcome(job, SUCCEEDED, at, result=result if result != b"null" else None)


def errored(job: ClaimedJob, options: JobOptions, pool, error: str, tb: str | None, at: float,
            reason: str = ERROR) -> Outcome:
    """A run that raised, timed out or lost its worker: retry with backoff while tries remain,
    and, when it raised, while it has raised fewer than max_exceptions times."""
    tries = options.tries or pool.tries
    retry_until = options.retry_until
    raised = reason == ERROR  # timeouts and deaths use tries, not exceptions
    if job.attempt >= tries:
        return _outcome(job, FAILED, at, error=f"{error} (attempt {job.attempt} of {tries})",
                        traceback=tb, reason=reason, exception=raised)
    limit = options.max_exceptions
    if raised and limit is not None and job.exceptions + 1 >= limit:
        return _outcome(job, FAILED, at, traceback=tb, reason=reason, exception=True,
                        error=f"{error} (exception {job.exceptions + 1} of max_exceptions {limit})")
    delay = backoff_delay(pool.backoff if options.backoff is None else options.backoff, job.attempt)
    if retry_until is not None and at + delay > retry_until:
        return _outcome(job, FAILED, at, error=f"{error} (retry_until has passed)", traceback=tb,
                        reason=reason, exception=raised)
    return _outcome(job, PENDING, at, error=error, traceback=tb, available_at=at + delay,
                    reason=reason, exception=raised)


def failed(job: ClaimedJob, error: str, at: float) -> Outcome:
    return _outcome(job, FAILED, at, error=error, reason=ERROR)


def released(job: ClaimedJob, options: JobOptions, pool, delay: float, at: float) -> Outcome:
    """A run that called release(delay): back to pending after `delay`. As in Laravel, a
    release uses up its attempt, so `tries` bounds how often a job can release itself."""
    tries = options.tries or pool.tries
    if job.attempt >= tries:
        return _outcome(job, FAILED, at, reason=ERROR,
                        error=f"{RELEASED_LAST} (attempt {job.attempt} of {tries})")
    return _outcome(job, PENDING, at, available_at=at + delay)


def cancelled(job: ClaimedJob, at: float) -> Outcome:
    """A run stopped by q.cancel / jobrt cancel: no retry, no failure hook."""
    return _outcome(job, CANCELLED, at, error="cancelled while running (its worker was killed)")


def returned(job: ClaimedJob, at: float, why: str | None = None) -> Outcome:
    """Back to the queue as if never claimed: the run did not start, or was cut by shutdown."""
    return _outcome(job, PENDING, at, error=why, available_at=at, undo_attempt=True)
