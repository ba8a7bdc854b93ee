"""The one check of a number a user gives jobrt (a job option, a setting, a backoff policy),
and how a bad value is shown in the message that refuses it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

INT_MAX = 2**63 - 1  # what storage can hold


@dataclass(frozen=True)
class NumberRule:
    """What a number must be: finite, an int when `integer`, at least `minimum` (more than it
    when `above`), at most `maximum`; `unit` names what it counts ("seconds")."""

    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    integer: bool = False
    unit: str = ""

    @property
    def expected(self) -> str:
        """'an integer >= 1', 'a number of seconds > 0', 'an integer from -5 to 5'."""
        noun = "an integer" if self.integer else f"a number of {self.unit}" if self.unit else "a number"
        if self.minimum is not None and self.maximum is not None and self.maximum != INT_MAX:
            return f"{noun} from {_plain(self.minimum)} to {_plain(self.maximum)}"
        if self.minimum is not None:
            return f"{noun} {'>' if self.above else '>='} {_plain(self.minimum)}"
        return noun

    def check(self, value):
        """`value` (a float, unless `integer`) if it fits; ValueError 'must be ..., got ...'."""
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)) \
                or not finite(value) or not self._within(value):
            raise ValueError(f"must be {self.expected}, got {show(value)}")
        return int(value) if self.integer else float(value)

    def _within(self, value) -> bool:
        low, high = self.minimum, self.maximum
        if low is not None and (value <= low if self.above else value < low):
            return False
        return high is None or value <= high


def _plain(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def show(value) -> str:
    """A short one-line rendering of a bad value for an error message."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # inf, -inf, nan: as TOML spells them
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = f"a {type(value).__name__}"
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= 60 else text[:57] + "..."
