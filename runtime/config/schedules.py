"""The [schedules.NAME] tables of supervisor.toml, read into runtime.schedules.Schedule.

    [schedules.cleanup]
    job = "jobs.maintenance:cleanup"   # a registered job
    cron = "*/5 * * * *"               # or every = 300 (seconds); cron takes @hourly etc.
    timezone = "Europe/Berlin"         # of the cron expression; default UTC
    args = []                          # and kwargs = {}
    queue = "low"                      # and priority, timeout, tries, ...: the job's options
    catch_up = "latest"                # "latest", "all" or "none"
    overlap = "skip"                   # "skip" or "allow"

`read_schedules` checks what the file alone can tell (ConfigError naming the file, the
schedule and the key); `check_jobs` what needs the job modules: that each job is
registered and served, with options that make a job (the supervisor and `jobrt schedule
run` call it with a Queue that knows them).
"""

from __future__ import annotations

import datetime
import re

from runtime.errors import ConfigError, JobrtError, UnknownJob
from runtime.numbers import show
from runtime.options import check_option
from runtime.payload import dump_payload
from runtime.schedules import (
    CATCH_UP, OVERLAP, Schedule, check_cron, check_every, check_timezone,
)

_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
# the job options a schedule may set, as enqueue's `_`-keywords take them (not delay: a
# tick runs at its time)
JOB_OPTIONS = ("queue", "priority", "timeout", "tries", "backoff", "retry_until",
               "max_exceptions", "unique", "unique_for", "unique_until", "without_overlapping",
               "overlap_key", "rate_limit", "rate_key", "tags")
KEYS = ("job", "cron", "every", "timezone", "args", "kwargs", "catch_up", "overlap") + JOB_OPTIONS


def read_schedules(tables, path) -> dict[str, Schedule]:
    """The [schedules.*] tables of a parsed document; ConfigError on the first problem."""
    import difflib

    if not isinstance(tables, dict):
        raise ConfigError(f"must be tables such as [schedules.cleanup], got {show(tables)}", path,
                          "schedules")
    schedules = {}
    for name, table in tables.items():
        where = f"schedules.{name}" if _NAME.fullmatch(str(name)) else f"schedules.{show(str(name))}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError("a schedule name must be 1 to 100 letters, digits, _ or -", path, where)
        if not isinstance(table, dict):
            raise ConfigError(f"must be a table [{where}], got {show(table)}", path, where)
        for key in table:
            if key not in KEYS:
                close = difflib.get_close_matches(str(key), KEYS, n=1)
                hint = f'did you mean "{close[0]}"?' if close else "expected one of: " + ", ".join(KEYS)
                raise ConfigError(f"unknown key, {hint}", path, f"{where}.{key}")
        schedules[name] = _read_one(name, table, path, where)
    return schedules


def _read_one(name: str, table: dict, path, where: str) -> Schedule:
    def fail(key: str, message: str):
        raise ConfigError(message, path, f"{where}.{key}")

    job = table.get("job")
    if job is None:
        fail("job", 'is missing: name a registered job, e.g. job = "jobs.examples:echo"')
    if not isinstance(job, str) or not job.strip() or not job.isprintable():
        fail("job", f"must be a job name such as \"jobs.examples:echo\", got {show(job)}")
    given = [key for key in ("cron", "every") if key in table]
    if len(given) != 1:
        message = "give cron or every, not both" if given else \
            'needs a cron = "*/5 * * * *" (or "@hourly", ...) or an every = SECONDS'
        fail(given[1] if given else "cron", message)
    values = {}
    for key, check in (("cron", check_cron), ("every", check_every), ("timezone", check_timezone)):
        if key in table:
            try:
                values[key] = check(table[key])
            except ValueError as exc:
                fail(key, str(exc))
    if "timezone" in table and "every" in table:
        fail("timezone", "applies to cron only: `every` counts seconds, whatever the zone")
    for key, choices in (("catch_up", CATCH_UP), ("overlap", OVERLAP)):
        if key in table and table[key] not in choices:
            shown = " or ".join(f'"{choice}"' for choice in choices)
            fail(key, f"must be {shown}, got {show(table[key])}")
    args, kwargs = table.get("args", []), table.get("kwargs", {})
    if not isinstance(args, list):
        fail("args", f"must be a list of the job's positional arguments, got {show(args)}")
    if not isinstance(kwargs, dict):
        fail("kwargs", f"must be a table of the job's keyword arguments, got {show(kwargs)}")
    for key, value in (("args", args), ("kwargs", kwargs)):
        if _has_date(value):
            fail(key, "holds a TOML date or time, which JSON cannot carry: write it as a string")
    try:
        dump_payload(job, args, kwargs)
    except JobrtError as exc:
        fail("args", str(exc))
    options = {}
    for key in JOB_OPTIONS:
        if key in table:
            try:
                options["_" + key] = check_option(key, table[key])
            except ValueError as exc:
                fail(key, str(exc))
    return Schedule(name=name, job=job, cron=values.get("cron"), every=values.get("every"),
                    timezone=values.get("timezone", "UTC"), args=tuple(args), kwargs=dict(kwargs),
                    options=options, catch_up=table.get("catch_up", "latest"),
                    overlap=table.get("overlap", "allow"),
                    given_cron=table["cron"].strip() if "cron" in table else None)


def _has_date(value, depth: int = 0) -> bool:
    if isinstance(value, (datetime.date, datetime.time)):
        return True
    if depth > 100:
        return False
    if isinstance(value, list):
        return any(_has_date(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return any(_has_date(item, depth + 1) for item in value.values())
    return False


def check_jobs(schedules: dict[str, Schedule], queue, path) -> None:
    """Each schedule's job, built once as a tick would build it by `queue` (a Queue knowing
    the config's job modules and pools): an unregistered job, a queue no pool serves or
    options that make no job are a ConfigError naming the schedule's key."""
    for schedule in schedules.values():
        where = f"schedules.{schedule.name}"
        try:
            spec = queue.spec_of(schedule.job)
            if callable(spec.without_overlapping) \
                    and not {"_overlap_key", "_without_overlapping"} & set(schedule.options):
                raise ConfigError(f"job {schedule.job}'s without_overlapping is a function of its "
                                  f"arguments, which the supervisor does not run: set overlap_key "
                                  f"(or without_overlapping) in the schedule", path, f"{where}.job")
            queue.new_job(schedule.job, schedule.args, schedule.kwargs, schedule.options, 0.0)
        except UnknownJob as exc:
            raise ConfigError(str(exc), path, f"{where}.job") from None
        except ConfigError:
            raise
        except JobrtError as exc:
            if "served by no pool" not in str(exc):
                raise ConfigError(str(exc), path, f"{where}.job") from None
            # the fix enqueue's error names (_queue=) is the schedule's own queue key here
            what = str(exc).split("; add it")[0]
            raise ConfigError(f"{what}; add it to a pool's queues, or set this schedule's queue "
                              f"to one a pool serves", path, f"{where}.queue") from None
