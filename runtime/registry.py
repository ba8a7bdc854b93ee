"""The @job decorator and the registry of job names a worker may run.

A decorated function keeps working as a plain function; the decorator only
attaches a JobSpec. A registry is built by importing the configured job
modules and collecting the specs they expose, so there is no global mutable
table: what a worker can run is exactly what its modules define.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from runtime.errors import ConfigError, UnknownJob
from runtime.options import check_option, unique_without_key
from runtime.payload import dump_result
from runtime.source_files import project_modules

ATTR = "__jobrt__"
BUILTIN_MODULE = "runtime.bench_jobs"  # jobrt's own jobs: in every registry
RESERVED_PREFIX = "jobrt."  # names of jobrt's own jobs; a user's job may not take one


@dataclass(frozen=True)
class JobSpec:
    """A job function and its options (None means: the pool's setting)."""

    name: str
    func: Callable
    queue: str = "default"
    timeout: float | None = None
    tries: int | None = None
    backoff: object = None
    priority: int = 0
    retry_until: float | None = None  # seconds after enqueue
    unique: bool | str = False  # True: one live job per name and arguments; a text: that key
    max_exceptions: int | None = None  # runs that may raise before it fails, tries left or not
    unique_for: float | None = None  # seconds the unique key is held at most
    unique_until: str | None = None  # "start": the key is freed when the job starts
    on_failure: str | None = None  # the job name of its failure hook (`@fn.on_failure`)
    # True: one run at a time per job name; a text: per key; a function of the job's
    # arguments: per the key it returns for each enqueue (Laravel's WithoutOverlapping($id))
    without_overlapping: object = False
    rate_limit: str | None = None  # "10/s", or the name of a [rate_limits] limiter
    tags: tuple = ()  # labels to find its jobs by (runtime.tags), sorted

    def invoke(self, payload: bytes) -> bytes:
        """Run the function on a JSON payload `[args, kwargs]`; return the result's JSON."""
        args, kwargs = orjson.loads(payload)
        return dump_result(self.func(*args, **kwargs))


def job(func: Callable | None = None, *, name: str | None = None, queue: str = "default",
        timeout: float | None = None, tries: int | None = None, backoff=None, priority: int = 0,
        retry_until: float | None = None, unique: bool = False,
        max_exceptions: int | None = None, unique_for: float | None = None,
        unique_until: str | None = None, without_overlapping: bool | str = False,
        rate_limit: str | None = None, tags=()):
    """Register a function as a jobrt job. Usable bare (`@job`) or with options, checked
    here by the rules enqueue overrides and pool defaults share: a bad one fails the import
    of the job's module, naming the option."""
    given = {"queue": queue, "timeout": timeout, "tries": tries, "backoff": backoff, "priority": priority,
             "retry_until": retry_until, "unique": unique, "max_exceptions": max_exceptions,
             "unique_for": unique_for, "unique_until": unique_until,
             "without_overlapping": without_overlapping, "rate_limit": rate_limit,
             "tags": () if tags is None else tags}
    checked = {}
    for option, value in given.items():
        if option == "without_overlapping" and callable(value):
            checked[option] = value  # the key, made from each enqueue's arguments
            continue
        try:
            checked[option] = None if value is None else check_option(option, value)
        except ValueError as exc:
            raise ValueError(f"@job({option}=...): {exc}") from None
    stray = unique_without_key(checked["unique"], checked["unique_for"], checked["unique_until"])
    if stray:
        raise ValueError(f"@job({stray}=...): needs unique=True or a key, or the job has no "
                         f"unique key to hold")
    if name is not None and (not isinstance(name, str) or not name or not name.isprintable()):
        raise ValueError(f"@job(name=...): must be a printable, non-empty job name, got {name!r:.60}")

    def wrap(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"@job decorates functions, got {fn!r}")
        spec = JobSpec(name=name or f"{fn.__module__}:{fn.__qualname__}", func=fn, **checked)
        setattr(fn, ATTR, spec)
        fn.on_failure = lambda hook: _failure_hook(fn, hook)
        return fn

    return wrap(func) if func is not None else wrap


def _failure_hook(fn: Callable, hook: Callable) -> Callable:
    """`@job_function.on_failure`: `hook(record)` runs once, in a worker, after the job failed
    for good. It is a job of its own (the job's queue and timeout, one try), which storage
    enqueues in the transaction that fails the job; `record` holds the job's id, name,
    queue, args, kwargs, attempts and error."""
    spec = spec_of(fn)
    if not callable(hook) or spec_of(hook) is not None:
        raise TypeError(f"@{spec.name}.on_failure decorates a plain function, got {hook!r:.80}")
    if spec.on_failure is not None:
        raise ValueError(f"job {spec.name} already has a failure hook ({spec.on_failure})")
    hook_spec = JobSpec(name=f"{hook.__module__}:{hook.__qualname__}", func=hook, queue=spec.queue,
                        timeout=spec.timeout, tries=1)
    setattr(hook, ATTR, hook_spec)
    setattr(fn, ATTR, replace(spec, on_failure=hook_spec.name))
    return hook


def spec_of(obj) -> JobSpec | None:
    return getattr(obj, ATTR, None) if callable(obj) else None


def _specs_in(module) -> list[JobSpec]:
    found = []
    for value in list(vars(module).values()):
        spec = spec_of(value)
        if spec is not None and spec.func is value:
            found.append(spec)
    return found


def import_module(module_name: str, config_path: str | None = None):
    """Import one job module, turning any failure into a ConfigError that names it."""
    try:
        return importlib.import_module(module_name)
    except BaseException as exc:  # a job module may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ConfigError(
            f"cannot import job module {module_name!r}: {type(exc).__name__}: {exc} "
            f"(check the name and that its directory is in [jobs] path)",
            config_path, "jobs.modules") from None


def collect(modules, search_path=(), config_path: str | None = None) -> dict[str, JobSpec]:
    """Import `modules` (after putting `search_path` dirs on sys.path) and map job names to
    specs; jobrt's own jobs (BUILTIN_MODULE) are always among them."""
    for directory in reversed(tuple(search_path)):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    registry: dict[str, JobSpec] = {}
    for module_name in (*modules, BUILTIN_MODULE):
        for spec in _specs_in(import_module(module_name, config_path)):
            if spec.name.startswith(RESERVED_PREFIX) and spec.func.__module__ != BUILTIN_MODULE:
                raise ConfigError(
                    f"job {spec.name!r} (in {spec.func.__module__}): names starting with "
                    f"{RESERVED_PREFIX!r} are jobrt's own; give it another name=",
                    config_path, "jobs.modules")
            other = registry.get(spec.name)
            if other is not None and other.func is not spec.func:
                raise ConfigError(
                    f"two jobs are named {spec.name!r} ({other.func.__module__} and "
                    f"{spec.func.__module__}); give one of them another name=",
                    config_path, "jobs.modules")
            registry[spec.name] = spec
    return registry


def resolve(target, registry: dict[str, JobSpec] | None = None) -> JobSpec:
    """Find the JobSpec for a decorated function or a job name.

    A name is looked up in `registry` (the config's modules) first; a
    `module:function` name is otherwise found by importing its module.
    """
    if callable(target):
        spec = spec_of(target)
        if spec is None:
            raise UnknownJob(
                f"{getattr(target, '__qualname__', target)!r} is not a job: decorate it with @runtime.job")
        return spec
    if not isinstance(target, str) or not target:
        raise UnknownJob(f"a job is a decorated function or its name, got {target!r}")
    if registry and target in registry:
        return registry[target]
    module_name, _, attr = target.partition(":")
    if attr:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise UnknownJob(f"unknown job {target!r}: cannot import {module_name!r} ({exc})") from None
        for spec in _specs_in(module):
            if spec.name == target:
                return spec
    known = ", ".join(sorted(registry)[:10]) if registry else "none loaded"
    raise UnknownJob(
        f"unknown job {target!r}: no @job with that name in the job modules "
        f"(known: {known}); names are 'module:function' unless @job(name=...) says otherwise")


def reimport(modules, search_path=(), config_path: str | None = None) -> dict[str, JobSpec]:
    """Forget the job modules' packages, and the project's other modules they imported
    (runtime.source_files), and import them again from disk: how a worker forked after a
    reload gets the new code of jobs its supervisor preloaded long ago."""
    packages = {name.split(".")[0] for name in modules}
    project = project_modules()
    for name in list(sys.modules):
        if name.split(".")[0] in packages or name in project:
            del sys.modules[name]
    importlib.invalidate_caches()
    return collect(modules, search_path, config_path)
