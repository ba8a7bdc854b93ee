"""Backoff policies: how long a failed job waits before its next attempt.

A policy is plain JSON-able data, so it can sit in supervisor.toml, on the
@job decorator and in a job's stored options alike:

    30                                  constant: every retry waits 30 seconds
    [10, 60, 300]                       attempt n waits list[min(n-1, len-1)] seconds
    {"base": 1, "factor": 2,            exponential: base * factor**(n-1) seconds,
     "max": 300, "jitter": 0.5}         capped at max, times uniform(1 - jitter, 1)

`check_backoff` validates and normalizes a policy; `backoff_delay` turns a
normalized policy and the number of the attempt that just failed into seconds.
"""

from __future__ import annotations

import math

from runtime.numbers import NumberRule, show

EXPONENTIAL_DEFAULTS = {"factor": 2, "max": 3600, "jitter": 0.5}
EXPONENTIAL_KEYS = ("base", "factor", "max", "jitter")

_FORMS = (
    "a number of seconds >= 0, a non-empty list of them, "
    'or an exponential policy table such as {"base": 1, "factor": 2, "max": 300, "jitter": 0.5}'
)


def exponential(base: float = 1, factor: float = 2, max: float = 3600, jitter: float = 0.5) -> dict:
    """An exponential backoff policy for `@job(backoff=...)`: base * factor**(n-1) seconds,
    capped at `max` seconds, each delay multiplied by uniform(1 - jitter, 1)."""
    return check_backoff({"base": base, "factor": factor, "max": max, "jitter": jitter})


def check_backoff(value):
    """Return `value` as a normalized policy, or raise ValueError saying what is wrong.

    Numbers stay numbers, lists stay lists (a copy), and an exponential table
    gets its defaults filled in (factor 2, max 3600 seconds, jitter 0.5).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value, "backoff", _SECONDS)
    if isinstance(value, list):
        if not value:
            raise ValueError(f"backoff must be {_FORMS}, got an empty list")
        return [_number(item, f"backoff item {i}", _SECONDS) for i, item in enumerate(value, 1)]
    if isinstance(value, dict):
        return _check_exponential(value)
    raise ValueError(f"backoff must be {_FORMS}, got {show(value)}")


def _check_exponential(table: dict) -> dict:
    for key in table:
        if key not in EXPONENTIAL_KEYS:
            import difflib  # for this message only: @job checks policies in the zygote, whose image workers share

            close = difflib.get_close_matches(str(key), EXPONENTIAL_KEYS, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "valid keys: " + ", ".join(EXPONENTIAL_KEYS)
            raise ValueError(f"backoff has an unknown key {show(key)}, {hint}")
    if "base" not in table:
        raise ValueError('backoff table needs "base" (seconds > 0) for an exponential policy')
    policy = {**EXPONENTIAL_DEFAULTS, **table}
    return {
        "base": _number(policy["base"], "backoff base", _POSITIVE_SECONDS),
        "factor": _number(policy["factor"], "backoff factor", NumberRule(minimum=1)),
        "max": _number(policy["max"], "backoff max", _POSITIVE_SECONDS),
        "jitter": _number(policy["jitter"], "backoff jitter", NumberRule(minimum=0, maximum=1)),
    }


def backoff_delay(policy, attempt: int, rng=None) -> float:
    """Seconds to wait after attempt number `attempt` (1-based) failed.

    `policy` is a normalized policy (see `check_backoff`). The result is always
    finite and >= 0, and for an exponential policy never above its `max`,
    however large `attempt` is. The jitter is drawn from `rng` (what has
    random.Random's uniform()), else from the random module.
    """
    n = max(int(attempt), 1)
    if isinstance(policy, list):
        return float(policy[min(n, len(policy)) - 1])
    if not isinstance(policy, dict):
        return float(policy)
    base, factor, cap = float(policy["base"]), float(policy["factor"]), float(policy["max"])
    n = min(n, 2**62)  # keeps (n - 1) * log(factor) a finite float
    # Compare in log space so that factor ** (n - 1) is only computed when it may fit.
    delay = cap
    if factor == 1 or math.log(base) + (n - 1) * math.log(factor) < math.log(cap):
        try:
            delay = min(base * factor ** (n - 1), cap)
        except OverflowError:  # a tiny base with a huge factor ** (n - 1)
            pass
    jitter = float(policy["jitter"])
    if jitter:
        import random  # delays are drawn in the supervisor; the zygote only checks policies

        delay *= (rng or random).uniform(1 - jitter, 1)
    return min(max(delay, 0.0), cap)


_SECONDS = NumberRule(minimum=0, unit="seconds")
_POSITIVE_SECONDS = NumberRule(minimum=0, above=True, unit="seconds")


def _number(value, what: str, rule: NumberRule):
    """The value as given (an int stays an int, unless past 64 bits, which JSON storage
    cannot carry: then a float), if `rule` admits it."""
    try:
        rule.check(value)
    except ValueError as exc:
        raise ValueError(f"{what} {exc}") from None
    return value if isinstance(value, float) or -2**63 <= value < 2**63 else float(value)
