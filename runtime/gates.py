"""Gates on when a job may start: `without_overlapping` and `rate_limit`, and the keys a
job's row carries for them.

    @job(without_overlapping=True)       overlap key: the job's name
    enqueue(_overlap_key="event-17")     overlap key: "event-17", shared by every job using it
    @job(rate_limit="10/s")              rate key "job:NAME", 10 starts in any 1 s
    @job(rate_limit="exports")           rate key "limit:exports", as [rate_limits] exports says
    enqueue(_rate_key=user_id)           ... and "|<user_id>" after it: one limiter per user

Storage enforces them (runtime.storage.base.Storage.exchange); a job held back by one is
pending and uses no attempt. A named limiter is resolved where the job is enqueued, from
the config the client was opened with, so its row carries the limit itself.
"""

from __future__ import annotations

import re

from runtime.numbers import show

_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400}
_LIMITER = re.compile(r"[A-Za-z0-9_.-]{1,100}")
RATE_EXPECTED = ('a rate such as "10/s", "100/m", "5000/h" or "20/10s" (at least 1 start per '
                 'period), or the name of a limiter of [rate_limits]')
MAX_STARTS = 1_000_000  # a rate's starts are kept one row each, for one period


def parse_rate(text) -> tuple[int, float] | None:
    """(starts, period in seconds) of a rate such as "10/s", or None when `text` is not one."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    starts, count, unit = match.groups()
    period = float(count or 1) * _UNITS[unit]
    if not 1 <= int(starts) <= MAX_STARTS or period <= 0:
        return None
    return int(starts), period


def check_rate_limit(value) -> str:
    """A rate ("10/s") or a limiter name, as given."""
    if isinstance(value, str) and (parse_rate(value) or _LIMITER.fullmatch(value)):
        return value
    raise ValueError(f"must be {RATE_EXPECTED}, got {show(value)}")


def check_rate_spec(value) -> tuple[int, float]:
    """A [rate_limits] entry: a rate, never a name."""
    rate = parse_rate(value)
    if rate is None:
        raise ValueError(f'must be a rate such as "60/m", "10/s" or "20/10s", got {show(value)}')
    return rate


def check_limiter_name(name) -> str:
    if not isinstance(name, str) or not _LIMITER.fullmatch(name) or parse_rate(name):
        raise ValueError(f"a limiter name is letters, digits, '_', '-' or '.', got {show(name)}")
    return name


def check_overlap(value):
    """True (the key is the job's name), False, or a key of printable text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value and value.isprintable() and encodable(value):
        return value
    raise ValueError(f"must be True, False or a non-empty printable key, got {show(value)}")


def check_rate_key(value) -> str:
    """What splits a limiter (a user id, say): printable text or an integer, as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value and value.isprintable() and encodable(value):
        return value
    raise ValueError(f"must be a non-empty printable text or an integer, got {show(value)}")


def overlap_key(job_name: str, value) -> str | None:
    if value is True:
        return job_name
    return value or None


def rate_key(job_name: str, limit: str, split_by: str | None, limiters: dict | None):
    """(rate key, starts, period) of a job limited by `limit`: a rate of its own, or a named
    limiter looked up in `limiters` (the config's [rate_limits]). KeyError(message) when
    the name is not there."""
    rate = parse_rate(limit)
    if rate is not None:
        key = f"job:{job_name}"
    else:
        if not limiters or limit not in limiters:
            known = ", ".join(sorted(limiters)) if limiters else "none"
            raise KeyError(f"rate limit {limit!r} names no limiter of [rate_limits] in the config "
                           f"(known: {known}); define it there (e.g. {limit} = \"60/m\") and "
                           f"connect with the config, or give a rate such as \"60/m\"")
        rate, key = limiters[limit], f"limit:{limit}"
    if split_by is not None:
        key = f"{key}|{split_by}"
    return key, rate[0], rate[1]


def encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
