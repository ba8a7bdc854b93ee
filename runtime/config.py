"""supervisor.toml: the settings table, and loading and validating the file.

One table, `SETTINGS`, names every setting with its section, type, default,
unit and help text. It alone drives `load_config` / `config_from_dict`
(unknown keys, types, ranges, defaults) and `default_config_text`, the
commented file `jobrt init` writes. To add a setting, add a row here and a
field to `Config`, `PoolConfig` or `HealthConfig`.

Every problem raises `ConfigError(message, path, key)`, whose text is one
line naming the file, the key and what is expected, e.g.

    supervisor.toml: pools.default.workers: must be an integer from 1 to 1024, got "two"
"""

from __future__ import annotations

import difflib
import keyword
import os
import re
import textwrap
import tomllib
from dataclasses import dataclass
from typing import Any, Callable

from runtime.backoff import _finite, _is_number, _show, check_backoff
from runtime.errors import ConfigError

POOL = "pools.*"  # the section of every [pools.NAME] table
DEFAULT_POOL = "default"
MAX_FILE_BYTES = 1 << 20
INT_MAX = 2**63 - 1  # what storage can hold
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class PoolConfig:
    """One [pools.NAME] table: a set of workers serving some queues."""

    name: str
    queues: tuple[str, ...]
    workers: int
    timeout: float
    max_jobs: int
    max_time: float
    max_memory_mb: int
    tries: int
    backoff: Any  # a normalized policy, see runtime.backoff
    grace: float
    prefetch: int
    user: str
    group: str
    run_as_root: bool
    max_open_files: int
    core_dumps: bool


@dataclass(frozen=True)
class HealthConfig:
    """The [health] table: the thresholds of `jobrt health`; 0 turns a check off."""

    workers_warning: int
    workers_critical: int
    pending_warning: int
    pending_critical: int
    oldest_pending_warning: float
    oldest_pending_critical: float
    failed_warning: int
    failed_critical: int


@dataclass(frozen=True)
class Config:
    """A whole supervisor.toml, validated, with every default filled in."""

    path: str | None  # absolute path of the file, None when not loaded from one
    base_dir: str  # absolute; relative paths in the file are relative to it
    storage_url: str
    lease: float
    poll: float
    retention: float
    modules: tuple[str, ...]
    module_path: tuple[str, ...]  # absolute directories
    pools: dict[str, PoolConfig]  # in file order
    health: HealthConfig
    metrics_listen: str = ""  # "HOST:PORT" of the Prometheus endpoint, "" = none
    metrics_allow_remote: bool = False


# -- types ------------------------------------------------------------------


class _Invalid(ValueError):
    """A value does not fit its setting; the message says what it must be."""


@dataclass(frozen=True)
class Kind:
    """A setting's type: what a value must be, and how to check and normalize one."""

    expected: str  # "an integer >= 1", for messages and docs
    convert: Callable[[Any], Any]  # returns the normalized value or raises _Invalid


def _number(expected: str, ok: Callable[[Any], bool], integer: bool = False) -> Kind:
    def convert(value):
        fits = isinstance(value, int) if integer else _finite(value) if _is_number(value) else False
        if isinstance(value, bool) or not fits or not ok(value):
            raise _Invalid(f"must be {expected}, got {_show(value)}")
        return value if integer else float(value)

    return Kind(expected, convert)


def _integer(low: int, high: int = INT_MAX) -> Kind:
    expected = f"an integer >= {low}" if high == INT_MAX else f"an integer from {low} to {high}"
    return _number(expected, lambda x: low <= x <= high, integer=True)


def _names(item: str, plural: str, ok: Callable[[str], bool], distinct: bool = False) -> Kind:
    """A non-empty list of strings, each `ok`; returned as a tuple."""
    expected = f"a non-empty list of {plural}"

    def convert(value):
        if not isinstance(value, list) or not value:
            raise _Invalid(f"must be {expected}, got {_show(value)}")
        seen = set()
        for i, name in enumerate(value, 1):
            if not isinstance(name, str) or not ok(name):
                raise _Invalid(f"item {i} must be {item}, got {_show(name)}")
            if distinct and name in seen:
                raise _Invalid(f"{_show(name)} is listed twice; {plural} must be distinct")
            seen.add(name)
        return tuple(value)

    return Kind(expected, convert)


def _check_url(value):
    if not isinstance(value, str) or not value.isprintable() or not re.fullmatch(r"[A-Za-z][\w+.-]*:.+", value):
        raise _Invalid(f"must be {URL.expected}, got {_show(value)}")
    return value


def _check_policy(value):
    try:
        return check_backoff(value)
    except ValueError as err:
        raise _Invalid(str(err).removeprefix("backoff ")) from None


def _check_bool(value):
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_show(value)}")
    return value


def _check_listen(value):
    if value == "":
        return value
    if not isinstance(value, str):
        raise _Invalid(f"must be {LISTEN.expected}, got {_show(value)}")
    from runtime.metrics import parse_listen  # imports prometheus_client: only when metrics are on

    try:
        parse_listen(value)
    except ValueError as err:
        raise _Invalid(str(err)) from None
    return value


def _check_account(value):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}|", value):
        raise _Invalid(f"must be {ACCOUNT.expected}, got {_show(value)}")
    return value


BOOL = Kind("true or false", _check_bool)
ACCOUNT = Kind('a user or group name, or "" for none', _check_account)
SECONDS = _number("a number of seconds >= 0", lambda x: x >= 0)
POSITIVE_SECONDS = _number("a number of seconds > 0", lambda x: x > 0)
URL = Kind("a storage URL such as sqlite:///var/jobrt.db or postgresql://user@host/db", _check_url)
BACKOFF = Kind("a number of seconds, a list of them, or {base, factor, max, jitter}", _check_policy)
def is_queue_name(name: str) -> bool:
    """Printable (so no lone surrogates), no whitespace, 1 to 200 characters; enqueue checks it too."""
    return 0 < len(name) <= 200 and name.isprintable() and not any(c.isspace() for c in name)


QUEUES = _names("a queue name (no spaces)", "queue names", is_queue_name, distinct=True)
MODULES = _names(
    "an importable module name such as jobs.examples",
    "module names",
    lambda s: all(part.isidentifier() and not keyword.iskeyword(part) for part in s.split(".")),
)
DIRS = _names("a directory", "directories", lambda s: s != "" and "\0" not in s)
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
    Setting("jobs", "modules", MODULES, ["jobs.examples"], "",
            "job modules, imported before workers fork"),
    Setting("jobs", "path", DIRS, ["."], "",
            "directories added to sys.path before importing, relative to this file",
            field="module_path"),
    Setting(POOL, "queues", QUEUES, ["default"], "",
            "queues this pool serves, in strict priority order"),
    Setting(POOL, "workers", _integer(1, 1024), 2, "processes",
            "worker processes in this pool"),
    Setting(POOL, "timeout", POSITIVE_SECONDS, 60, "seconds",
            "hard limit per job: past it the worker is killed and respawned"),
    Setting(POOL, "max_jobs", _integer(0), 1000, "jobs",
            "recycle a worker after this many jobs, with jitter; 0 = never"),
    Setting(POOL, "max_time", SECONDS, 3600, "seconds",
            "recycle a worker after this long alive, with jitter; 0 = never"),
    Setting(POOL, "max_memory_mb", _integer(0), 0, "MiB",
            "recycle a worker whose RSS passes this after a job; 0 = no limit"),
    Setting(POOL, "tries", _integer(1), 3, "attempts",
            "attempts per job unless the job sets its own"),
    Setting(POOL, "backoff", BACKOFF, [10, 60, 300], "seconds",
            "wait before retry n: a number, a list (item n; the last repeats) "
            "or an exponential policy such as {base = 1, factor = 2, max = 300, jitter = 0.5}"),
    Setting(POOL, "grace", SECONDS, 30, "seconds",
            "on SIGTERM, how long running jobs get to finish before they are killed and returned"),
    Setting(POOL, "prefetch", _integer(1, 16), 2, "jobs",
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
)
# fmt: on


def settings_of(section: str) -> tuple[Setting, ...]:
    """The rows of one section ("storage", "jobs", "health", "metrics" or POOL), in table order."""
    return tuple(s for s in SETTINGS if s.section == section)


# -- loading ------------------------------------------------------------------


def load_config(path) -> Config:
    """Read, parse and validate a supervisor.toml. Raises ConfigError only."""
    name = os.fsdecode(path)
    try:
        if os.path.isdir(name):
            raise ConfigError("is a directory, expected a TOML file", name)
        with open(name, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("file not found (`jobrt init` writes a default one)", name) from None
    except PermissionError:
        raise ConfigError("cannot read the file: permission denied", name) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the file: {_reason(err)}", name) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than {MAX_FILE_BYTES >> 20} MiB; is this the right file?", name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text: bad byte {raw[err.start]:#04x} on line {line}", name) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML: {_reason(err)}", name) from None
    except (ValueError, RecursionError, MemoryError) as err:  # huge ints, deep nesting
        raise ConfigError(f"invalid TOML: {_reason(err)}", name) from None
    return config_from_dict(data, path=name, base_dir=os.path.dirname(os.path.abspath(name)))


def config_from_dict(data: dict, path: str | None = None, base_dir: str = ".") -> Config:
    """Validate a parsed document (as tomllib returns it) and fill in defaults.

    `path` is the file the document came from, named as given in messages;
    relative paths in the document are relative to `base_dir`.
    """
    path = os.fsdecode(path) if path is not None else None
    if not isinstance(data, dict):
        raise ConfigError(f"must be a TOML document (a table), got {_show(data)}", path)
    _reject_unknown(data, ("storage", "jobs", "pools", "health", "metrics"), path, (), "section")
    top = {}
    for section in ("storage", "jobs", "metrics"):
        top.update(_read_table(data.get(section, {}), settings_of(section), path, (section,)))
    health = HealthConfig(**_read_table(data.get("health", {}), settings_of("health"), path,
                                        ("health",)))
    _check_levels(health, path)
    base_dir = os.path.abspath(base_dir)
    top["module_path"] = tuple(os.path.normpath(os.path.join(base_dir, d)) for d in top["module_path"])
    tables = data.get("pools", {DEFAULT_POOL: {}})
    if not isinstance(tables, dict):
        raise ConfigError(f"must be tables such as [pools.default], got {_show(tables)}", path, "pools")
    if not tables:
        raise ConfigError("needs at least one pool, e.g. [pools.default]", path, "pools")
    pools = {}
    for name, table in tables.items():
        if not isinstance(name, str) or not _BARE_KEY.fullmatch(name):
            raise ConfigError("a pool name must be letters, digits, _ or -", path, _key("pools", name))
        pools[name] = PoolConfig(name=name, **_read_table(table, settings_of(POOL), path, ("pools", name)))
    return Config(
        path=os.path.abspath(path) if path is not None else None,
        base_dir=base_dir,
        pools=pools,
        health=health,
        **top,
    )


def check_pool(values: dict, where: str) -> PoolConfig:
    """A PoolConfig from keyword values (the embedded Pool's), checked as [pools.*] is;
    a bad value raises ConfigError naming `where.key`."""
    _reject_unknown(values, [s.name for s in settings_of(POOL)], None, (where,), "setting")
    table = {key: value for key, value in values.items() if value is not None}
    return PoolConfig(name=where, **_read_table(table, settings_of(POOL), None, (where,)))


def _check_levels(health: HealthConfig, path) -> None:
    """A critical threshold must not be milder than its warning (both on, 0 = off)."""
    for check, fewer in (("workers", True), ("pending", False), ("oldest_pending", False),
                         ("failed", False)):
        warning = getattr(health, f"{check}_warning")
        critical = getattr(health, f"{check}_critical")
        if warning and critical and (critical > warning if fewer else critical < warning):
            relation = "at most" if fewer else "at least"
            raise ConfigError(f"must be {relation} {check}_warning ({_show(warning)}), "
                              f"got {_show(critical)}", path, f"health.{check}_critical")


def _read_table(table, settings: tuple[Setting, ...], path, where: tuple[str, ...]) -> dict[str, Any]:
    """Check one section against its rows; return {field: normalized value}."""
    if not isinstance(table, dict):
        raise ConfigError(f"must be a table [{_key(*where)}], got {_show(table)}", path, _key(*where))
    _reject_unknown(table, [s.name for s in settings], path, where, "key")
    values = {}
    for setting in settings:
        value = table.get(setting.name, setting.default)
        try:
            values[setting.field or setting.name] = setting.kind.convert(value)
        except _Invalid as err:
            raise ConfigError(str(err), path, _key(*where, setting.name)) from None
    return values


def _reject_unknown(table: dict, valid, path, where: tuple[str, ...], what: str) -> None:
    for key in table:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "expected one of: " + ", ".join(valid)
            raise ConfigError(f"unknown {what}, {hint}", path, _key(*where, key))


def _key(*parts) -> str:
    """A dotted key as TOML would spell it: pools.default.workers, pools."a b"."""
    return ".".join(p if isinstance(p, str) and _BARE_KEY.fullmatch(p) else _show(str(p)) for p in parts)


def _reason(err: Exception) -> str:
    """An exception's text on one line (an OSError's without its errno and file)."""
    return " ".join(str(getattr(err, "strerror", None) or err).split()) or type(err).__name__


# -- the default file -----------------------------------------------------------


def default_config_text() -> str:
    """The commented supervisor.toml that `jobrt init` writes; it loads as the defaults."""
    lines = [
        "# jobrt supervisor configuration, written by `jobrt init`.",
        "# Every setting is shown with its default. Durations are in seconds.",
    ]
    for section, about in SECTIONS.items():
        lines += ["", *_comment(about), f"[{'pools.' + DEFAULT_POOL if section == POOL else section}]"]
        for setting in settings_of(section):
            unit = f" ({setting.unit})" if setting.unit else ""
            lines += _comment(setting.help + unit)
            lines.append(f"{setting.name} = {_toml(setting.default)}")
    return "\n".join(lines) + "\n"


def write_default_config(path) -> None:
    """Write `default_config_text()` to `path`; never overwrites an existing file."""
    name = os.fsdecode(path)
    try:
        with open(name, "x", encoding="utf-8") as file:
            file.write(default_config_text())
    except FileExistsError:
        message = "already exists; not overwriting it (remove it or choose another path)"
        raise ConfigError(message, name) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot write the file: {_reason(err)}", name) from None


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, 76)]


def _toml(value) -> str:
    """A default value as TOML (the defaults are plain strings, numbers and lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for a default of type {type(value).__name__}")
