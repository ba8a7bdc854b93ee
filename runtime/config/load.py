"""supervisor.toml: loading and validating the file against the settings table
(runtime.config.settings). The commented file `jobrt init` writes is in
runtime.config.init_file.

Every problem raises `ConfigError(message, path, key)`, whose text is one
line naming the file, the key and what is expected, e.g.

    supervisor.toml: pools.default.workers: must be an integer from 1 to 1024, got "two"
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from runtime.config.schedules import read_schedules
from runtime.config.settings import DEFAULT_POOL, POOL, Invalid, Setting, settings_of
from runtime.errors import ConfigError
from runtime.gates import check_limiter_name, check_rate_spec
from runtime.numbers import show as _show

MAX_FILE_BYTES = 1 << 20
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class PoolConfig:
    """One [pools.NAME] table: a set of workers serving some queues."""

    name: str
    queues: tuple[str, ...]
    workers: int
    balance: str  # "off", "simple" or "auto" (runtime.workers.balancing)
    min_workers: int
    max_workers: int
    balance_strategy: str
    balance_max_shift: int
    balance_cooldown: float
    timeout: float
    max_jobs: int
    max_time: float
    max_memory_mb: int
    memory_limit_mb: int
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
    dashboard_listen: str = "127.0.0.1:9466"  # [dashboard]: see runtime.config.settings
    dashboard_token: str = field(default="", repr=False)
    dashboard_password_file: str = ""
    dashboard_show_args: bool = True
    call_timeout: float = 0.0  # [storage]: 0 = lease / 6 (runtime.supervisor.fencing)
    fence_margin: float = 0.0  # 0 = lease / 3
    allow_network_fs: bool = False
    rate_limits: dict = field(default_factory=dict)  # [rate_limits]: name -> (starts, period)
    schedules: dict = field(default_factory=dict)  # [schedules.NAME]: name -> runtime.schedules.Schedule


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
    _reject_unknown(data, ("storage", "jobs", "pools", "health", "metrics", "dashboard", "rate_limits",
                           "schedules"),
                    path, (), "section")
    top = {}
    for section in ("storage", "jobs", "metrics", "dashboard"):
        top.update(_read_table(data.get(section, {}), settings_of(section), path, (section,)))
    _check_lease(top, path)
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
        pools[name] = _check_balance(
            PoolConfig(name=name, **_read_table(table, settings_of(POOL), path, ("pools", name))), path,
            ("pools", name))
    return Config(
        path=os.path.abspath(path) if path is not None else None,
        base_dir=base_dir,
        pools=pools,
        health=health,
        rate_limits=_rate_limits(data.get("rate_limits", {}), path),
        schedules=read_schedules(data.get("schedules", {}), path),
        **top,
    )


def _rate_limits(table, path) -> dict:
    """[rate_limits]: limiter name = "60/m", for `@job(rate_limit="name")`."""
    if not isinstance(table, dict):
        raise ConfigError(f'must be a table of limiters such as exports = "60/m", got {_show(table)}',
                          path, "rate_limits")
    limits = {}
    for name, spec in table.items():
        try:
            limits[check_limiter_name(name)] = check_rate_spec(spec)
        except ValueError as exc:
            raise ConfigError(str(exc), path, _key("rate_limits", name)) from None
    return limits


def check_pool(values: dict, where: str) -> PoolConfig:
    """A PoolConfig from keyword values (the embedded Pool's), checked as [pools.*] is;
    a bad value raises ConfigError naming `where.key`."""
    _reject_unknown(values, [s.name for s in settings_of(POOL)], None, (where,), "setting")
    table = {key: value for key, value in values.items() if value is not None}
    return _check_balance(PoolConfig(name=where, **_read_table(table, settings_of(POOL), None, (where,))),
                          None, (where,))


def _check_balance(pool: PoolConfig, path, where: tuple[str, ...]) -> PoolConfig:
    """With simple or auto, every queue's min_workers must fit in max_workers."""
    floor = pool.min_workers * len(pool.queues)
    if pool.balance != "off" and floor > pool.max_workers:
        raise ConfigError(
            f"{pool.min_workers} per queue x {len(pool.queues)} queues = {floor} workers, more than "
            f"max_workers ({pool.max_workers}) allows in pool {pool.name}; lower min_workers or "
            f"raise max_workers", path, _key(*where, "min_workers"))
    return pool


def _check_lease(storage: dict, path) -> None:
    """A supervisor must notice in time that it lost its leases: its storage calls end
    well within the fence margin, which ends within the lease."""
    lease = storage["lease"]
    margin = storage["fence_margin"] or lease / 3
    if margin >= lease:
        raise ConfigError(f"must be less than lease ({_show(lease)} s), got {_show(margin)}",
                          path, "storage.fence_margin")
    if storage["call_timeout"] > margin / 2:
        raise ConfigError(f"must be at most half the fence margin ({_show(margin / 2)} s with "
                          f"lease = {_show(lease)}), got {_show(storage['call_timeout'])}",
                          path, "storage.call_timeout")


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
        except Invalid as err:
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
