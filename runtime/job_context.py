"""What a running job may ask of jobrt: its attempt number, release and fail, the batch it
is a member of, the result of the chain step before it, and a schedule's tick time.

`release()` and `fail()` raise exceptions derived from BaseException so that a
job's own `except Exception:` cannot swallow them by accident.
"""

from __future__ import annotations

from contextvars import ContextVar

from runtime.options import SECONDS

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which checkers know by name: workers load no typing
if TYPE_CHECKING:  # imported when a job asks (current_batch): workers are forked without storage
    from runtime.storage.workflows import BatchRecord

_current: ContextVar[tuple[int, int] | None] = ContextVar("jobrt_current_job", default=None)
# What the supervisor read for a job of a workflow when it claimed it (run_context).
_context: ContextVar[dict | None] = ContextVar("jobrt_job_context", default=None)


class Release(BaseException):
    """Raised by release(): put the job back in its queue after `delay` seconds."""

    def __init__(self, delay: float):
        super().__init__(delay)
        self.delay = delay


class Fail(BaseException):
    """Raised by fail(): end the job as failed now, with no further tries."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def release(delay: float = 0) -> None:
    """Stop this run and put the job back in its queue, available after `delay` seconds.

    The run counts as an attempt, so `tries` still bounds how often a job is released."""
    if not valid_delay(delay):
        raise ValueError(bad_delay(delay))
    raise Release(float(delay))


def valid_delay(delay) -> bool:
    """A finite number of seconds >= 0: the rule of every delay option (runtime.options)."""
    try:
        SECONDS.check(delay)
    except ValueError:
        return False
    return True


def bad_delay(delay) -> str:
    return f"release(delay): delay must be a finite number of seconds >= 0, got {delay!r:.60}"


def fail(reason: str = "failed by the job") -> None:
    """Stop this run and mark the job failed at once, whatever tries are left."""
    raise Fail(str(reason))


def _require() -> tuple[int, int]:
    current = _current.get()
    if current is None:
        raise RuntimeError("not inside a jobrt job: attempt() and job_id() work only while a worker runs a job")
    return current


def attempt() -> int:
    """The number of this run of the current job: 1 for the first."""
    return _require()[1]


def job_id() -> int:
    """The id of the job this worker is running; 0 under `jobrt run`, which stores no job."""
    return _require()[0]


def current_batch() -> BatchRecord | None:
    """The batch this job is a member of (None if it is none's), as it was when the job was
    claimed: its id, name, counts and progress, and `cancelled_at` (not None: cancelled,
    its pending members will not run). Add members with q.batch_add(current_batch().id, ...)."""
    _require()
    context = _readable()
    found = context.get("batch") if context else None
    if found is None:
        return None
    from runtime.storage.workflows import BatchRecord

    return BatchRecord.from_dict(found)


def previous_result():
    """The result of the step before this one in its chain (None for a first step, or a job
    of no chain); after a step that is a batch, that batch's record (a dict)."""
    _require()
    context = _readable()
    return context.get("previous") if context else None


def scheduled_at() -> float | None:
    """The tick time (UNIX seconds) this job was enqueued for by its schedule, None for a
    job no schedule enqueued. Later than the tick when the job waited or was retried."""
    _require()
    context = _context.get()
    return context.get("scheduled_at") if context else None


def _readable() -> dict | None:
    context = _context.get()
    if context and "unreadable" in context:
        raise RuntimeError(context["unreadable"])
    return context


def enter(job_id_: int, attempt_: int, context: dict | None = None):
    return _current.set((job_id_, attempt_)), _context.set(context)


def leave(token) -> None:
    _current.reset(token[0])
    _context.reset(token[1])
