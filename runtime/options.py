"""Job options: one set of rules for `@job(...)`, the `_`-prefixed enqueue overrides and the
`[pools.*]` defaults, and `JobOptions`, what a run needs of them.

    @job(timeout=..)  --check_option-->  JobSpec  --+
    enqueue(_timeout=..) --check_option-------------+--> JobOptions.encode() --> the job's row
    [pools.x] timeout --(settings: the same rules)        |
                                                          v claimed
                                   WorkerPool: JobOptions.decode(), once per claim

A bad value raises ValueError("must be ..., got ...") naming what it must be; each caller
says where it came from (the decorator at import, an enqueue, a config key).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import orjson

from runtime.backoff import check_backoff
from runtime.gates import check_overlap, check_rate_key, check_rate_limit, encodable
from runtime.numbers import INT_MAX, NumberRule, show
from runtime.tags import check_tags

TIMEOUT = NumberRule(minimum=0, above=True, unit="seconds")
TRIES = NumberRule(minimum=1, maximum=INT_MAX, integer=True)
PRIORITY = NumberRule(minimum=-2**31, maximum=2**31 - 1, integer=True)  # what every backend stores
SECONDS = NumberRule(minimum=0, unit="seconds")  # delay, retry_until
QUEUE_EXPECTED = "a queue name (printable, no spaces, at most 200 characters)"


def is_queue_name(name) -> bool:
    """Printable (so no lone surrogates), no whitespace, 1 to 200 characters."""
    return isinstance(name, str) and 0 < len(name) <= 200 and name.isprintable() \
        and not any(c.isspace() for c in name)


def check_queue(value) -> str:
    if not is_queue_name(value):
        raise ValueError(f"must be {QUEUE_EXPECTED}, got {show(value)}")
    return value


def check_policy(value):
    """A backoff policy (runtime.backoff), its message without the word the caller names."""
    try:
        return check_backoff(value)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("backoff ")) from None


def check_unique(value):
    """True (a key made of the job's name and arguments), False, or a key of printable text."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value or not encodable(value):
        raise ValueError(f"must be True, False or a non-empty text key, got {show(value)}")
    return value


def check_unique_until(value) -> str:
    """When a unique job's key is freed: "end" (when it ends, the default) or "start"."""
    if value not in ("start", "end"):
        raise ValueError(f'must be "start" or "end", got {show(value)}')
    return value


def unique_without_key(unique, unique_for, unique_until) -> str | None:
    """The unique_* option set on a job that is not unique (it would mean nothing), if any."""
    if not unique:
        for option, value in (("unique_for", unique_for), ("unique_until", unique_until)):
            if value is not None:
                return option
    return None


RULES = {
    "queue": check_queue,
    "timeout": TIMEOUT.check,
    "tries": TRIES.check,
    "max_exceptions": TRIES.check,
    "backoff": check_policy,
    "priority": PRIORITY.check,
    "retry_until": SECONDS.check,
    "delay": SECONDS.check,
    "unique": check_unique,
    "unique_for": TIMEOUT.check,  # seconds > 0
    "unique_until": check_unique_until,
    "without_overlapping": check_overlap,
    "overlap_key": check_overlap,  # enqueue's name for it: _overlap_key="event-17"
    "rate_limit": check_rate_limit,
    "rate_key": check_rate_key,
    "tags": check_tags,
}


def check_option(name: str, value):
    """`value` normalized by the rule of option `name`; ValueError saying what it must be."""
    return RULES[name](value)


@dataclass(frozen=True)
class JobOptions:
    """What a run needs of its job's options; None means: the pool's setting."""

    timeout: float | None = None
    tries: int | None = None
    backoff: object = None
    retry_until: float | None = None  # wall-clock time after which no retry is made
    max_exceptions: int | None = None  # runs that may raise before the job fails for good
    on_failure: str | None = None  # the job name of its failure hook, which storage enqueues

    def encode(self) -> bytes | None:
        """The options as stored with the job: only those set, None when none is."""
        stored = {key: value for key, value in vars(self).items() if value is not None}
        return orjson.dumps(stored) if stored else None

    @staticmethod
    def decode(raw: bytes | None) -> "JobOptions":
        return NO_OPTIONS if raw is None else _decode(raw)


NO_OPTIONS = JobOptions()
_FIELDS = ("timeout", "tries", "backoff", "retry_until", "max_exceptions", "on_failure")


@functools.lru_cache(maxsize=1024)
def _decode(raw: bytes) -> JobOptions:
    """The jobs of one function carry the same stored options: the supervisor decodes them
    once (1.6 us a job otherwise) and shares the frozen value."""
    stored = orjson.loads(raw)
    return JobOptions(**{key: stored[key] for key in _FIELDS if key in stored})
