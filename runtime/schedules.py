"""Schedules: when the ticks of a `[schedules.NAME]` table fall, and which of them run.

    [schedules.NAME] --Schedule--> due_ticks(after, now) --plan(catch_up)--> [Planned]
                                                               |
    supervisor (runtime.supervisor.ticking) --Storage.enqueue_ticks--> one row per tick

A schedule's timing is a cron expression (five fields, or a name such as @hourly) read in
its timezone by cronsim, or `every` N seconds counted from the UNIX epoch, so every
supervisor computes the same tick times whenever it started. Tick times are epoch seconds.
Daylight saving time is cronsim's, which follows Debian's cron: a job at a fixed local time
that falls in a gap (spring forward) runs when the gap ends, one in a repeated hour (fall
back) runs once, at its first occurrence; `*` hours and `*/N` minutes run on real time.

A tick is *missed* when it is due but was not run on time: a later tick is due too (no
supervisor ran it before the next came), or it came due more than STARTUP_GRACE seconds
before the supervisor started looking (downtime). What happens to missed ticks is the
schedule's `catch_up`:

    latest  the newest due tick runs, standing for the missed ones before it
    all     each missed tick runs, oldest first, at most CATCH_UP_MAX (the newest ones)
    none    missed ticks do not run; the next tick on time does

This module is pure: no storage, no clock of its own, no job modules imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from cronsim import CronSim, CronSimError

NICKNAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
             "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
             "@hourly": "0 * * * *"}
CATCH_UP = ("latest", "all", "none")
OVERLAP = ("skip", "allow")
CATCH_UP_MAX = 100  # catch_up = "all": missed ticks run at most, the newest; older ones are missed
SCAN_MAX = 100_000  # ticks one look at a schedule walks at most (a long downtime: the rest next turn)
STARTUP_GRACE = 2.0  # seconds: a tick due this shortly before a supervisor started is on time
MAX_EVERY = 10 * 366 * 86400  # seconds: ten years


@dataclass(frozen=True)
class Schedule:
    """One [schedules.NAME] table, checked (runtime.config.schedules reads it)."""

    name: str
    job: str  # a registered job's name
    cron: str | None = None  # five fields, nicknames expanded
    every: int | None = None  # seconds
    timezone: str = "UTC"
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # enqueue's underscore options: {"_queue": "x"}
    catch_up: str = "latest"
    overlap: str = "allow"
    given_cron: str | None = None  # as written, for humans (@hourly stays @hourly)

    @property
    def expression(self) -> str:
        """What `jobrt schedule list` shows: "*/5 * * * * Europe/Berlin", "every 300 s"."""
        if self.every is not None:
            return f"every {self.every} s"
        return f"{self.given_cron or self.cron} {self.timezone}"

    def next_after(self, at: float) -> float | None:
        """The first tick strictly after `at`; None when there is none (within 50 years)."""
        ticks, _ = due_ticks(self, at, float("inf"), limit=1)
        return ticks[0] if ticks else None


class Planned(NamedTuple):
    """What to write for one tick: run it (enqueue its job) or record it as missed, with
    `missed` the count of ticks this row stands for that did not run."""

    tick_at: float
    run: bool
    missed: int = 0


# -- reading a schedule's timing -------------------------------------------------------


def check_cron(text) -> str:
    """A cron expression with five fields, or one of NICKNAMES; returns the five fields.
    ValueError says what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"must be a cron expression such as \"*/5 * * * *\" or \"@hourly\", "
                         f"got {text!r:.60}")
    expression = NICKNAMES.get(text.strip().lower(), text.strip())
    if expression.startswith("@"):
        raise ValueError(f"unknown name {text!r:.40}: use five fields or one of "
                         f"{', '.join(NICKNAMES)}")
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"must have five fields (minute hour day-of-month month day-of-week), "
                         f"got {len(fields)} in {text!r:.60}")
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=timezone.utc))
    except CronSimError as exc:
        raise ValueError(f"{exc} field in {text!r:.60}") from None
    except (ValueError, IndexError, KeyError) as exc:  # what cronsim lets through unwrapped
        raise ValueError(f"cannot read {text!r:.60} ({exc})") from None
    return " ".join(fields)


def check_timezone(name) -> str:
    """An IANA time zone name such as "Europe/Berlin" or "UTC"."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ValueError(f"must be a time zone name such as \"Europe/Berlin\" or \"UTC\", "
                         f"got {name!r:.60}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r:.60}: use an IANA name such as "
                         f"\"Europe/Berlin\", \"America/New_York\" or \"UTC\"") from None
    return name


def check_every(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EVERY:
        raise ValueError(f"must be a whole number of seconds from 1 to {MAX_EVERY} (ten "
                         f"years), got {value!r:.60}")
    return value


# -- ticks ---------------------------------------------------------------------------


def due_ticks(schedule: Schedule, after: float, now: float,
              limit: int = SCAN_MAX) -> tuple[list[float], bool]:
    """The ticks in (after, now], oldest first, at most `limit` of them; and whether that
    is all of them (False: more follow the last one returned)."""
    if schedule.every is not None:
        return _every_ticks(schedule.every, after, now, limit)
    zone = ZoneInfo(schedule.timezone)
    try:
        ticks = CronSim(schedule.cron, datetime.fromtimestamp(after, zone))
    except (OverflowError, OSError, ValueError):  # `after` beyond what datetime holds
        return [], True
    found: list[float] = []
    while len(found) < limit:
        try:
            at = next(ticks).timestamp()
        except (StopIteration, OverflowError, ValueError):  # none in 50 years, or year 9999
            return found, True
        if at <= after:
            # cronsim walks local wall time for fixed times: from inside a repeated hour
            # (fall back) its next is the repeated hour's first pass, which is behind us
            continue
        if at > now:
            return found, True
        found.append(at)
    return found, False


def _every_ticks(every: int, after: float, now: float, limit: int) -> tuple[list[float], bool]:
    first = (int(after // every) + 1) * every
    if now == float("inf"):
        return ([float(first)] if limit else []), False
    last = int(now // every) * every
    count = max(0, (last - first) // every + 1)
    taken = min(count, limit)
    return [float(first + k * every) for k in range(taken)], taken == count


def plan(schedule: Schedule, due: list[float], complete: bool, started_at: float) -> list[Planned]:
    """What to write for the due ticks (oldest first; `complete` as due_ticks said) of a
    supervisor that began looking at this schedule at `started_at` (epoch s)."""
    if not due:
        return []
    if not complete:  # a downtime longer than one look: all of these are behind us
        return [Planned(due[-1], False, len(due))]
    newest = due[-1]
    late = [t for t in due if t < newest or t <= started_at - STARTUP_GRACE]
    if schedule.catch_up == "latest":
        return [Planned(newest, True, len(due) - 1)]
    if schedule.catch_up == "all":
        kept = due[-CATCH_UP_MAX:]
        dropped = len(due) - len(kept)
        planned = [Planned(due[dropped - 1], False, dropped)] if dropped else []
        return planned + [Planned(t, True) for t in kept]
    planned = [Planned(late[-1], False, len(late))] if late else []
    if len(late) < len(due):
        planned.append(Planned(newest, True))
    return planned


def has_late(due: list[float], started_at: float) -> bool:
    """Whether some of these due ticks would be missed ones (the caller then reads the
    newest tick row again first: another supervisor may have run them meanwhile)."""
    return len(due) > 1 or bool(due and due[0] <= started_at - STARTUP_GRACE)


def tick_job(queue, schedule: Schedule, tick_at: float, now: float):
    """The NewJob of one tick: built by `queue` (a runtime.client.Queue, its new_job) as
    enqueue would build it at `now`, with the tick time in its options as `scheduled_at`."""
    new = queue.new_job(schedule.job, schedule.args, schedule.kwargs, schedule.options, now)
    options = orjson.loads(new.options) if new.options else {}
    options["scheduled_at"] = tick_at
    return new._replace(options=orjson.dumps(options))
