"""Schedules as pure functions: reading [schedules.NAME], the ticks of cron (against
cronsim's own answers, on DST days) and `every`, and what catch_up makes of missed ticks.
And the Ticker of two supervisors over one in-memory store, on a clock the test moves."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings, strategies as st

from runtime.config.load import config_from_dict
from runtime.errors import ConfigError
from runtime.schedules import (
    CATCH_UP_MAX, STARTUP_GRACE, Planned, Schedule, check_cron, due_ticks, plan,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ts(zone, *fields) -> float:
    return datetime(*fields, tzinfo=zone).timestamp()


def cron(expression: str, zone: str = "UTC", **extra) -> Schedule:
    return Schedule("s", "jobs.examples:noop", cron=check_cron(expression), timezone=zone, **extra)


def library_ticks(expression: str, zone, start: float, end: float) -> list[float]:
    """cronsim's own answers: its iterator from `start`, up to `end`."""
    found = []
    for moment in CronSim(expression, datetime.fromtimestamp(start, zone)):
        if moment.timestamp() > end:
            return found
        found.append(moment.timestamp())


# -- reading schedules ----------------------------------------------------------------

def test_nicknames_and_fields():
    assert check_cron("@hourly") == "0 * * * *"
    assert check_cron(" @Daily ") == "0 0 * * *"
    assert check_cron("*/5  *  * * MON-FRI") == "*/5 * * * MON-FRI"
    for bad, words in (("* * * *", "five fields"), ("* * * * * *", "five fields"),
                       ("60 * * * *", "minute"), ("@reboot", "unknown name"),
                       ("0 0 30 2 *", "day-of-month"), (5, "cron expression")):
        with pytest.raises(ValueError, match=words):
            check_cron(bad)


@pytest.mark.parametrize("table, key, words", [
    ({"cron": "* * * * *"}, "job", "is missing"),
    ({"job": "a:b"}, "cron", "needs a cron"),
    ({"job": "a:b", "cron": "* * * * *", "every": 5}, "every", "not both"),
    ({"job": "a:b", "cron": "* * * *"}, "cron", "five fields"),
    ({"job": "a:b", "cron": "* * * * *", "timezone": "Europe/Nowhere"}, "timezone", "unknown time zone"),
    ({"job": "a:b", "every": 5, "timezone": "UTC"}, "timezone", "cron only"),
    ({"job": "a:b", "every": 0.5}, "every", "whole number"),
    ({"job": "a:b", "every": 5, "catch_up": "some"}, "catch_up", '"latest" or "all" or "none"'),
    ({"job": "a:b", "every": 5, "overlap": True}, "overlap", '"skip" or "allow"'),
    ({"job": "a:b", "every": 5, "timeout": -1}, "timeout", "> 0"),
    ({"job": "a:b", "every": 5, "args": {"a": 1}}, "args", "a list"),
    ({"job": "a:b", "every": 5, "kwargs": [1]}, "kwargs", "a table"),
    ({"job": "a:b", "every": 5, "delay": 3}, "delay", "unknown key"),
    ({"job": "a:b", "every": 5, "tags": "nightly"}, "tags", "a list of at most 20 tags"),
    ({"job": "a:b", "every": 5, "args": [float("nan")]}, "args", "NaN"),
])
def test_a_bad_schedule_names_file_schedule_and_key(table, key, words):
    with pytest.raises(ConfigError, match=words) as caught:
        config_from_dict({"schedules": {"nightly": table}}, path="sup.toml")
    assert str(caught.value).startswith(f"sup.toml: schedules.nightly.{key}: ")


def test_a_schedule_with_defaults_and_options():
    cfg = config_from_dict({"schedules": {"cleanup": {
        "job": "jobs.examples:add", "cron": "@hourly", "timezone": "Europe/Berlin",
        "args": [1, 2], "queue": "low", "priority": 5, "overlap": "skip", "tags": ["cron"]}}})
    schedule = cfg.schedules["cleanup"]
    assert (schedule.cron, schedule.catch_up, schedule.overlap, schedule.options) == (
        "0 * * * *", "latest", "skip", {"_queue": "low", "_priority": 5, "_tags": ("cron",)})
    assert schedule.expression == "@hourly Europe/Berlin"


# -- ticks ----------------------------------------------------------------------------

def test_every_counts_from_the_epoch():
    every = Schedule("s", "j", every=300)
    assert due_ticks(every, 1000.0, 2000.0) == ([1200.0, 1500.0, 1800.0], True)
    assert due_ticks(every, 1200.0, 1500.0) == ([1500.0], True)  # after, not at
    assert due_ticks(every, 1000.0, 2000.0, limit=2) == ([1200.0, 1500.0], False)
    assert every.next_after(1799.5) == 1800.0


DST_DAYS = [  # (zone, the day before a change, the day after)
    (BERLIN, (2025, 3, 29), (2025, 3, 31)),  # spring forward: 02:00 -> 03:00
    (BERLIN, (2025, 10, 25), (2025, 10, 27)),  # fall back: 03:00 -> 02:00
    (NEW_YORK, (2025, 3, 8), (2025, 3, 10)),
    (NEW_YORK, (2025, 11, 1), (2025, 11, 3)),
]
EXPRESSIONS = ["30 2 * * *", "0 * * * *", "*/30 * * * *", "15 1-3 * * *", "0 0 * * *",
               "45 2 * * SUN", "0 3 * * *"]


@pytest.mark.parametrize("zone, before, after", DST_DAYS)
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_cron_ticks_on_dst_days_are_the_librarys(zone, before, after, expression):
    start, end = ts(zone, *before), ts(zone, *after)
    assert due_ticks(cron(expression, zone.key), start, end)[0] == \
        library_ticks(expression, zone, start, end)


def test_dst_as_cron_does():
    """Debian cron's rules, which cronsim follows: a fixed time in the spring gap runs when
    the gap ends; in the repeated hour it runs once; wildcard hours follow real time."""
    gap_day = due_ticks(cron("30 2 * * *", "Europe/Berlin"), ts(BERLIN, 2025, 3, 30),
                        ts(BERLIN, 2025, 3, 31))[0]
    assert gap_day == [ts(BERLIN, 2025, 3, 30, 3, 0)]
    repeat_day = due_ticks(cron("30 2 * * *", "Europe/Berlin"), ts(BERLIN, 2025, 10, 26),
                           ts(BERLIN, 2025, 10, 27))[0]
    assert repeat_day == [datetime(2025, 10, 26, 0, 30, tzinfo=timezone.utc).timestamp()]
    hourly = cron("0 * * * *", "Europe/Berlin")
    day = [ts(BERLIN, 2025, 3, 30) - 1, ts(BERLIN, 2025, 3, 31) - 1]  # (after, up to]: from 00:00
    assert len(due_ticks(hourly, *day)[0]) == 23
    day = [ts(BERLIN, 2025, 10, 26) - 1, ts(BERLIN, 2025, 10, 27) - 1]
    assert len(due_ticks(hourly, *day)[0]) == 25


@settings(max_examples=200, deadline=None)
@given(expression=st.sampled_from(EXPRESSIONS), day=st.sampled_from(DST_DAYS),
       offset=st.floats(0, 2 * 86400))
def test_a_cursor_anywhere_continues_the_same_ticks(expression, day, offset):
    """A supervisor that starts (or takes over) at any moment computes the ticks after it
    that one running all along computes: none repeated, none lost, in the repeated hour too."""
    zone, before, after = day
    start, end = ts(zone, *before), ts(zone, *after)
    every_tick = due_ticks(cron(expression, zone.key), start, end)[0]
    cursor = start + offset
    assert due_ticks(cron(expression, zone.key), cursor, end)[0] == \
        [t for t in every_tick if t > cursor]


# -- catch-up -------------------------------------------------------------------------

def sched(mode: str) -> Schedule:
    return Schedule("s", "j", every=10, catch_up=mode)


@pytest.mark.parametrize("mode, expected", [
    ("latest", [Planned(50.0, True, 4)]),
    ("all", [Planned(t, True) for t in (10.0, 20.0, 30.0, 40.0, 50.0)]),
    ("none", [Planned(50.0, False, 5)]),
])
def test_catch_up_after_downtime(mode, expected):
    # started at 51 after a downtime: 10..50 came due before it, 50 more than the grace ago
    assert plan(sched(mode), [10.0, 20.0, 30.0, 40.0, 50.0], True, 51.0 + STARTUP_GRACE) == expected


@pytest.mark.parametrize("mode", ["latest", "all", "none"])
def test_a_tick_on_time_runs_in_every_mode(mode):
    assert plan(sched(mode), [60.0], True, 0.0) == [Planned(60.0, True)]
    assert plan(sched(mode), [60.0], True, 60.0 + STARTUP_GRACE / 2) == [Planned(60.0, True)]


def test_none_runs_the_tick_on_time_after_missed_ones():
    assert plan(sched("none"), [40.0, 50.0, 60.0], True, 0.0) == [
        Planned(50.0, False, 2), Planned(60.0, True)]


def test_all_is_capped():
    due = [float(t) for t in range(1, CATCH_UP_MAX + 31)]
    planned = plan(sched("all"), due, True, 1e9)
    assert planned[0] == Planned(30.0, False, 30)
    assert [p.tick_at for p in planned[1:]] == due[30:] and all(p.run for p in planned[1:])


def test_a_scan_cut_short_is_all_missed():
    assert plan(sched("all"), [1.0, 2.0, 3.0], False, 0.0) == [Planned(3.0, False, 3)]
