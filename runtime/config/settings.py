"""The settings table of supervisor.toml, and the kinds of value a setting takes.

One table, `SETTINGS`, names every setting with its section, kind, default,
unit and help text. It alone drives loading and validation (runtime.config.load:
unknown keys, types, ranges, defaults) and the commented file `jobrt init`
writes. To add a setting, add a row here and a field to `Config`,
`PoolConfig` or `HealthConfig` in runtime.config.load.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any, Callable

from runtime.numbers import INT_MAX, NumberRule, show as _show
from runtime.options import TIMEOUT, TRIES, check_policy, is_queue_name

POOL = "pools.*"  # the section of every [pools.NAME] table
DEFAULT_POOL = "default"


# -- types ------------------------------------------------------------------


class Invalid(ValueError):
    """A value does not fit its setting; the message says what it must be."""


@dataclass(frozen=True)
class Kind:
    """A setting's type: what a value must be, and how to check and normalize one."""

    expected: str  # "an integer >= 1", for messages and docs
    convert: Callable[[Any], Any]  # returns the normalized value or raises Invalid


def _ruled(expected: str, check: Callable[[Any], Any]) -> Kind:
    """A Kind whose values a rule of runtime.options or runtime.numbers checks (the rules
    job options share), its ValueError becoming Invalid."""
    def convert(value):
        try:
            return check(value)
        except ValueError as err:
            raise Invalid(str(err)) from None

    return Kind(expected, convert)


def _number(rule: NumberRule) -> Kind:
    return _ruled(rule.expected, rule.check)


def _integer(low: int, high: int = INT_MAX) -> Kind:
    return _number(NumberRule(minimum=low, maximum=high, integer=True))


def _names(item: str, plural: str, ok: Callable[[str], bool], distinct: bool = False) -> Kind:
    """A non-empty list of strings, each `ok`; returned as a tuple."""
    expected = f"a non-empty list of {plural}"

    def convert(value):
        if not isinstance(value, list) or not value:
            raise Invalid(f"must be {expected}, got {_show(value)}")
        seen = set()
        for i, name in enumerate(value, 1):
            if not isinstance(name, str) or not ok(name):
                raise Invalid(f"item {i} must be {item}, got {_show(name)}")
            if distinct and name in seen:
                raise Invalid(f"{_show(name)} is listed twice; {plural} must be distinct")
            seen.add(name)
        return tuple(value)

    return Kind(expected, convert)


def _check_url(value):
    if not isinstance(value, str) or not value.isprintable() or not re.fullmatch(r"[A-Za-z][\w+.-]*:.+", value):
        raise Invalid(f"must be {URL.expected}, got {_show(value)}")
    return value


def _check_bool(value):
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, got {_show(value)}")
    return value


def _check_listen(value):
    if value == "":
        return value
    if not isinstance(value, str):
        raise Invalid(f"must be {LISTEN.expected}, got {_show(value)}")
    from runtime.supervisor.metrics import parse_listen  # imports prometheus_client: only when metrics are on

    try:
        parse_listen(value)
    except ValueError as err:
        raise Invalid(str(err)) from None
    return value


def _check_secret(value):
    if not isinstance(value, str) or (value and not (value.isprintable() and " " not in value)):
        raise Invalid("must be a string of printable characters without spaces")  # never echoed
    return value


def _check_file(value):
    if not isinstance(value, str) or "\0" in value:
        raise Invalid(f'must be a file path or "", got {_show(value)}')
    return value


def _choice(*values: str) -> Kind:
    """One of a few words, e.g. "off", "simple" or "auto"."""
    expected = "one of " + ", ".join(f'"{value}"' for value in values)

    def convert(value):
        if value not in values or not isinstance(value, str):
            raise Invalid(f"must be {expected}, got {_show(value)}")
        return value

    return Kind(expected, convert)


def _check_account(value):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}|", value):
        raise Invalid(f"must be {ACCOUNT.expected}, got {_show(value)}")
    return value


BOOL = Kind("true or false", _check_bool)
BALANCE = _choice("off", "simple", "auto")
BALANCE_STRATEGY = _choice("time", "size")
ACCOUNT = Kind('a user or group name, or "" for none', _check_account)
SECONDS = _number(NumberRule(minimum=0, unit="seconds"))
POSITIVE_SECONDS = _number(NumberRule(minimum=0, above=True, unit="seconds"))
URL = Kind("a storage URL such as sqlite:///var/jobrt.db or postgresql://user@host/db", _check_url)
BACKOFF = _ruled("a number of seconds, a list of them, or {base, factor, max, jitter}", check_policy)

QUEUES = _names("a queue name (no spaces)", "queue names", is_queue_name, distinct=True)
MODULES = _names(
    "an importable module name such as jobs.examples",
    "module names",
    lambda s: all(part.isidentifier() and not keyword.iskeyword(part) for part in s.split(".")),
)
DIRS = _names("a directory", "directories", lambda s: s != "" and "\0" not in s)
SECRET = Kind("a string of printable characters without spaces", _check_secret)
FILE = Kind('a file path, or "" for none', _check_file)
LISTEN = Kind('HOST:PORT such as 127.0.0.1:9464 or [::1]:9464, or "" for none', _check_listen)


# -- the table ----------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    section: str  # "storage", "jobs", "health", "metrics" or POOL
    name: str
    kind: Kind
    default: Any
    unit: str
    help: str
    field: str = ""  # attribute on Config / PoolConfig when not `name`


SECTIONS = {
    "storage": "Where jobs are kept.",
    "jobs": "Which job functions exist.",
    POOL: "One [pools.NAME] table per pool of workers; "
    "a supervisor can run several pools, and pools may share queues.",
    "health": "Thresholds of `jobrt health` (exit 0 healthy, 1 warning, 2 critical); "
    "0 turns a check off.",
    "metrics": "The Prometheus endpoint (GET /metrics) the supervisor serves.",
    "dashboard": "The web dashboard, `jobrt dashboard` (a process of its own, reading this storage).",
}

# fmt: off
SETTINGS = (
    Setting("storage", "url", URL, "sqlite:///var/jobrt.db", "",
            "sqlite:///PATH (a relative PATH is relative to this file) or postgresql://USER@HOST/DB",
            field="storage_url"),
    Setting("storage", "lease", POSITIVE_SECONDS, 30, "seconds",
            "how long a claimed job stays owned without renewal before another supervisor may rescue it"),
    Setting("storage", "poll", POSITIVE_SECONDS, 1.0, "seconds",
            "fallback poll interval; new jobs are normally picked up at once through a wake-up"),
    Setting("storage", "retention", SECONDS, 7 * 24 * 3600, "seconds",
            "how long ended jobs stay queryable before the supervisor deletes them; "
            "604800 = 7 days, 0 = forever"),
    Setting("storage", "call_timeout", SECONDS, 0, "seconds",
            "the longest the supervisor waits for one storage call (PostgreSQL: a frozen or "
            "unreachable server; connecting waits at least 2 s) before it gives up, keeps "
            "enforcing deadlines and retries with backoff; at most fence_margin / 2; 0 = lease / 6 "
            "(at most fence_margin / 2)"),
    Setting("storage", "fence_margin", SECONDS, 0, "seconds",
            "a supervisor that could not renew its leases for lease - fence_margin kills the "
            "jobs it runs and claims none until storage answers, before another supervisor "
            "may rescue them; 0 = lease / 3"),
    Setting("storage", "allow_network_fs", BOOL, False, "",
            "start even when the SQLite database is on a network filesystem (NFS, SMB, FUSE, "
            "9p ...): only safe if one host ever uses it"),
    Setting("jobs", "modules", MODULES, ["jobs.examples"], "",
            "job modules, imported before workers fork"),
    Setting("jobs", "path", DIRS, ["."], "",
            "directories added to sys.path before importing, relative to this file",
            field="module_path"),
    Setting(POOL, "queues", QUEUES, ["default"], "",
            "queues this pool serves, in strict priority order"),
    Setting(POOL, "workers", _integer(1, 1024), 2, "processes",
            "worker processes in this pool, with balance = \"off\" (simple and auto use "
            "min_workers and max_workers)"),
    Setting(POOL, "balance", BALANCE, "off", "",
            '"off": every worker serves the queues in strict priority order; "simple": max_workers '
            'split evenly between the queues, each worker serving one; "auto": workers resized and '
            "moved between the queues by each queue's load, every balance_cooldown"),
    Setting(POOL, "min_workers", _integer(1, 1024), 1, "processes",
            "with simple or auto: the fewest workers each queue keeps, even when idle"),
    Setting(POOL, "max_workers", _integer(1, 1024), 10, "processes",
            "with simple or auto: the most workers in the pool, all queues together "
            "(SIGTTIN / SIGTTOU move it by one); auto never grows past what free memory allows"),
    Setting(POOL, "balance_strategy", BALANCE_STRATEGY, "time", "",
            "with auto, a queue's load: \"time\" = due jobs x their average run time here, "
            "\"size\" = due jobs"),
    Setting(POOL, "balance_max_shift", _integer(1, 1024), 1, "processes",
            "with auto: the most workers a queue gains or loses in one step"),
    Setting(POOL, "balance_cooldown", POSITIVE_SECONDS, 3, "seconds",
            "with auto: time between steps (each step reads the queues' counts once)"),
    Setting(POOL, "timeout", _number(TIMEOUT), 60, "seconds",  # the rules of a job's own options
            "hard limit per job: past it the worker is killed and respawned"),
    Setting(POOL, "max_jobs", _integer(0), 1000, "jobs",
            "recycle a worker after this many jobs, with jitter; 0 = never"),
    Setting(POOL, "max_time", SECONDS, 3600, "seconds",
            "recycle a worker after this long alive, with jitter; 0 = never"),
    Setting(POOL, "max_memory_mb", _integer(0), 0, "MiB",
            "recycle a worker when the memory it owns (USS: its own pages, not those it shares "
            "with the supervisor) passes this after a job; 0 = no limit"),
    Setting(POOL, "memory_limit_mb", _integer(0), 0, "MiB",
            "kill a worker when the memory it owns (USS) passes this while a job runs (checked 10 "
            "times a second); the job fails with reason memory, retried while tries remain; 0 = no limit"),
    Setting(POOL, "tries", _number(TRIES), 3, "attempts",
            "attempts per job unless the job sets its own"),
    Setting(POOL, "backoff", BACKOFF, [10, 60, 300], "seconds",
            "wait before retry n: a number, a list (item n; the last repeats) "
            "or an exponential policy such as {base = 1, factor = 2, max = 300, jitter = 0.5}"),
    Setting(POOL, "grace", SECONDS, 30, "seconds",
            "on SIGTERM, how long running jobs get to finish before they are killed and returned"),
    Setting(POOL, "prefetch", _integer(1, 16), 4, "jobs",
            "jobs sent ahead to a busy worker whose current job is known to be short"),
    Setting(POOL, "user", ACCOUNT, "", "",
            "when the supervisor starts as root, workers switch to this user before any job runs "
            "(ignored, with a warning, when it does not start as root)"),
    Setting(POOL, "group", ACCOUNT, "", "",
            "the workers' group; empty = the user's primary group"),
    Setting(POOL, "run_as_root", BOOL, False, "",
            "allow jobs to run as root when the supervisor starts as root and no user is set"),
    Setting(POOL, "max_open_files", _integer(0, 1 << 20), 0, "files",
            "RLIMIT_NOFILE for workers and what jobs start; 0 = inherit the supervisor's"),
    Setting(POOL, "core_dumps", BOOL, False, "",
            "let a crashing job write a core dump (RLIMIT_CORE); off by default"),
    Setting("health", "workers_warning", _integer(0), 0, "workers",
            "warning when fewer workers than this are live (heartbeat in the last 30 s)"),
    Setting("health", "workers_critical", _integer(0), 1, "workers",
            "critical when fewer workers than this are live; 1 = critical when none is"),
    Setting("health", "pending_warning", _integer(0), 1000, "jobs",
            "warning when at least this many due jobs wait (delayed ones do not count)"),
    Setting("health", "pending_critical", _integer(0), 10000, "jobs",
            "critical when at least this many due jobs wait"),
    Setting("health", "oldest_pending_warning", SECONDS, 300, "seconds",
            "warning when the longest-waiting due job has waited at least this long"),
    Setting("health", "oldest_pending_critical", SECONDS, 1800, "seconds",
            "critical when the longest-waiting due job has waited at least this long"),
    Setting("health", "failed_warning", _integer(0), 100, "jobs",
            "warning when the failed-jobs store holds at least this many jobs"),
    Setting("health", "failed_critical", _integer(0), 0, "jobs",
            "critical when the failed-jobs store holds at least this many jobs"),
    Setting("metrics", "listen", LISTEN, "", "",
            'HOST:PORT to serve metrics on, e.g. "127.0.0.1:9464" or "[::1]:9464" '
            '(port 0 = any free port); "" = no metrics endpoint',
            field="metrics_listen"),
    Setting("metrics", "allow_remote", BOOL, False, "",
            "allow a listen address other hosts can reach; the endpoint has no authentication",
            field="metrics_allow_remote"),
    Setting("dashboard", "listen", LISTEN, "127.0.0.1:9466", "",
            "HOST:PORT the dashboard serves on (--listen overrides it); an address other hosts "
            "can reach needs a token or a password_file", field="dashboard_listen"),
    Setting("dashboard", "token", SECRET, "", "",
            "the secret every request must carry (HTTP Basic password, any user name, or "
            "Authorization: Bearer TOKEN); \"\" = none, allowed on loopback only",
            field="dashboard_token"),
    Setting("dashboard", "password_file", FILE, "", "",
            "a file whose first line is the token instead (relative to this file; keep it "
            "mode 0600); \"\" = none", field="dashboard_password_file"),
    Setting("dashboard", "show_args", BOOL, True, "",
            "show jobs' arguments and results; false hides them (they may hold personal data)",
            field="dashboard_show_args"),
)
# fmt: on


def settings_of(section: str) -> tuple[Setting, ...]:
    """The rows of one section ("storage", "jobs", "health", "metrics" or POOL), in table order."""
    return tuple(s for s in SETTINGS if s.section == section)
