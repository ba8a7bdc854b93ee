"""Lifecycle events of jobs (Laravel's Queue::before, Queue::after, JobExceptionOccurred,
Queue::failing): hooks that job modules register, which workers run around each run.

    @events.before_run         before the job's function is called (every attempt)
    @events.after_success      after it returned                     (event.result)
    @events.after_exception    after it raised                       (event.error, .traceback, .will_retry)
    @events.after_failure      after the run failed the job for good (event.error)
    @events.after_operator_retry  before the first run after `jobrt failed retry` (event.retried_at)

Each hook gets one argument, a JobEvent: the job's id, name, queue, args, kwargs and
attempt, and what the event adds. Hooks of one event run in the order they were
registered, in the worker that runs the job, inside the run (their time counts toward
its timeout). A hook that raises is logged as one line on the worker's stderr, which
the supervisor relays, and changes nothing: the other hooks still run, the job's
outcome stays as it was. They run only under a supervisor (`jobrt start`), not in the
embedded `runtime.Pool`.

`after_failure` follows a run that raised on its last try (or past max_exceptions or
retry_until), called `fail()`, released itself on its last try, or whose worker was
killed (timeout, memory_limit_mb) or died on its last try: the supervisor then sends
the record to another worker, which runs the hooks before its next job. Events are
notifications: one whose worker or supervisor dies at that moment is lost. What must
happen exactly once after a failure belongs in a failure hook (`@fn.on_failure`), a
job that storage makes in the transaction that fails the job.

Hooks are kept in the module that registers them (a table in its globals, not in
jobrt), and a worker gathers those of every module it has imported, so one that
imports its job modules anew after a reload has exactly the hooks of the new code.
"""

from __future__ import annotations

import itertools
import sys
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass

BEFORE_RUN = "before_run"
AFTER_SUCCESS = "after_success"
AFTER_EXCEPTION = "after_exception"
AFTER_FAILURE = "after_failure"
AFTER_OPERATOR_RETRY = "after_operator_retry"
EVENTS = (BEFORE_RUN, AFTER_SUCCESS, AFTER_EXCEPTION, AFTER_FAILURE, AFTER_OPERATOR_RETRY)

_TABLE = "__jobrt_events__"  # the global of a registering module: [(order, event, hook)]
# Hooks are found module by module; this stamp puts them back in the order they were
# registered across modules. Only ever counts up: it holds no hooks.
_order = itertools.count()


@dataclass(frozen=True, slots=True)
class JobEvent:
    """What a hook is told: the event, the job and its run."""

    event: str  # one of EVENTS
    id: int
    name: str
    queue: str
    args: list
    kwargs: dict
    attempt: int  # 1 for the first run
    result: object = None  # after_success: the return value, as JSON gives it back
    error: str | None = None  # after_exception, after_failure: `Type: message`, or why it failed
    traceback: str | None = None  # after_exception (and after_failure when it raised)
    will_retry: bool | None = None  # after_exception: whether the job will run again
    retried_at: float | None = None  # after_operator_retry: when `jobrt failed retry` ran (epoch s)


# The hooks of each event, in registration order (a namedtuple: workers are cloned without typing).
Hooks = namedtuple("Hooks", EVENTS, defaults=((),) * len(EVENTS))


def before_run(hook: Callable[[JobEvent], object]) -> Callable:
    """Register `hook(event)` to run before each run of every job (Laravel's Queue::before)."""
    return _register(BEFORE_RUN, hook)


def after_success(hook: Callable[[JobEvent], object]) -> Callable:
    """Register `hook(event)` to run after a run returned; `event.result` is its return
    value as JSON gives it back (Laravel's Queue::after)."""
    return _register(AFTER_SUCCESS, hook)


def after_exception(hook: Callable[[JobEvent], object]) -> Callable:
    """Register `hook(event)` to run after a run raised: `event.error`, `event.traceback`,
    and `event.will_retry`, whether the job will run again (tries, max_exceptions and
    retry_until decide; Laravel's JobExceptionOccurred). Not after `release()`, `fail()`
    or a timeout: those are not exceptions of the job."""
    return _register(AFTER_EXCEPTION, hook)


def after_failure(hook: Callable[[JobEvent], object]) -> Callable:
    """Register `hook(event)` to run after a run failed its job for good, however it ended
    (Laravel's Queue::failing); `event.error` says why. For every job; for one job, and
    exactly once, use its failure hook (`@fn.on_failure`)."""
    return _register(AFTER_FAILURE, hook)


def after_operator_retry(hook: Callable[[JobEvent], object]) -> Callable:
    """Register `hook(event)` to run when a failed job an operator retried (`jobrt failed
    retry`) runs again: in the worker of that run, before its before_run hooks;
    `event.retried_at` is when it was retried, `event.attempt` 1 (Laravel's
    JobRetryRequested, which fires in the command instead)."""
    return _register(AFTER_OPERATOR_RETRY, hook)


def _register(event: str, hook) -> Callable:
    if not callable(hook):
        raise TypeError(f"events.{event} registers a function, got {hook!r:.80}")
    # The caller's module keeps the hook (sys._getframe(2): past this helper and the
    # decorator), so a module imported anew brings its own hooks and not the old ones.
    table = sys._getframe(2).f_globals.setdefault(_TABLE, [])
    table.append((next(_order), event, hook))
    return hook


def registered() -> Hooks:
    """The hooks the imported modules registered, each event's in registration order."""
    found = []
    for module in list(sys.modules.values()):
        table = getattr(module, "__dict__", {}).get(_TABLE)
        if type(table) is list:
            found.extend(table)
    found.sort(key=lambda entry: entry[0])
    by_event: dict[str, list] = {event: [] for event in EVENTS}
    for _, event, hook in found:
        by_event[event].append(hook)
    return Hooks(*(tuple(by_event[event]) for event in EVENTS))


def hook_name(hook) -> str:
    """`module:qualname` of a hook, as log lines name it."""
    qualname = getattr(hook, "__qualname__", None) or repr(hook)[:80]
    return f"{getattr(hook, '__module__', None) or '?'}:{qualname}"


def fire(hooks: tuple, event: JobEvent) -> None:
    """Run each hook on `event`, in order; one that raises is logged and skipped."""
    for hook in hooks:
        try:
            hook(event)
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in a hook must not end the worker
            _log_failure(hook, event, exc)


def _log_failure(hook, event: JobEvent, exc: BaseException) -> None:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        text = "<unprintable>"
    line = f"jobrt: event hook {hook_name(hook)} ({event.event}) raised for job {event.id}: " \
           f"{type(exc).__name__}: {text}"
    try:
        sys.stderr.write(" ".join(line.split()) + "\n")  # one line, whatever the message holds
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - stderr closed by the job: nowhere left to say it
        pass
