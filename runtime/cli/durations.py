"""Durations on the command line: `90s`, `30m`, `24h`, `7d` (a bare number is seconds)."""

from __future__ import annotations

import argparse
import math
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 100 * 365 * 86400  # a century: past that, a typo
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def duration(text: str) -> float:
    """Seconds of a duration such as 7d; argparse's error for anything else."""
    found = _DURATION.fullmatch(text.strip()) if len(text) <= 30 else None
    value = float(found[1]) * UNITS[found[2] or "s"] if found else math.nan
    if not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be a duration such as 90s, 30m, 24h or 7d (a number and s, m, h or d; at most "
            f"100 years), got {text[:40]!r}")
    return value


def hours(text: str) -> float:
    """Seconds of a number of hours (--hours 48)."""
    try:
        value = float(text) * 3600 if len(text) <= 30 else math.nan
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be a number of hours from 0 to {MAX_SECONDS // 3600}, "
                                         f"got {text[:40]!r}")
    return value


def seconds_text(seconds: float) -> str:
    """The duration in its largest whole unit: 7d, 36h, 90s."""
    for unit in ("d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"
