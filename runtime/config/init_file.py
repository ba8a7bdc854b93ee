"""The commented supervisor.toml `jobrt init` writes, and the example job module beside it.

The file shows every setting of the settings table (runtime.config.settings)
with its default, each under a comment holding its help text and unit. Values
are written by tomli-w, so their quoting and escaping are the library's.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any, Mapping

import tomli_w

from runtime.config.load import _reason
from runtime.config.settings import DEFAULT_POOL, POOL, SECTIONS, settings_of
from runtime.errors import ConfigError

EXAMPLE_MODULE = "myjobs"  # the job module `jobrt init` writes beside the config
EXAMPLE_JOB = f"{EXAMPLE_MODULE}:hello"
EXAMPLE_MODULE_TEXT = f'''"""Your jobs, written by `jobrt init`. Every @job function here can be enqueued:

    jobrt enqueue --config supervisor.toml {EXAMPLE_JOB} --args '["world"]'

This module is found through [jobs] modules and path in supervisor.toml; add
more modules there. Arguments and results are JSON.
"""

from runtime import job


@job
def hello(name: str = "world") -> str:
    """An example job: returns a greeting (see it with `jobrt job ID`)."""
    return f"hello, {{name}}"
'''


def default_config_text(modules=(EXAMPLE_MODULE,),
                        values: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The commented supervisor.toml that `jobrt init` writes: every setting with its
    default, except [jobs] modules, which names `modules` (the example job module
    written beside the file, found through `path = ["."]`, the file's directory).

    `values` replaces defaults, by section and key as in the settings table
    ({"storage": {"url": ...}, "pools.*": {...}}); the result is written as is,
    not checked (loading the file checks it)."""
    values = {section: dict(table) for section, table in (values or {}).items()}
    values.setdefault("jobs", {}).setdefault("modules", list(modules))
    for section, table in values.items():
        names = [s.name for s in settings_of(section)]
        unknown = [key for key in table if key not in names]
        if section not in SECTIONS or unknown:
            raise ValueError(f"no setting {section}.{(unknown or [''])[0]} in the settings table")
    lines = [
        "# jobrt supervisor configuration, written by `jobrt init`.",
        "# Every setting is shown with its default. Durations are in seconds.",
    ]
    for section, about in SECTIONS.items():
        lines += ["", *_comment(about), f"[{'pools.' + DEFAULT_POOL if section == POOL else section}]"]
        for setting in settings_of(section):
            unit = f" ({setting.unit})" if setting.unit else ""
            lines += _comment(setting.help + unit)
            value = values.get(section, {}).get(setting.name, setting.default)
            if (section, setting.name) == ("jobs", "modules") and value == [EXAMPLE_MODULE]:
                lines.append(f"# ({EXAMPLE_MODULE}.py beside this file holds an example job)")
            lines.append(_assignment(setting.name, value))
    lines += ["", *_comment('Rate limiters that jobs share by name: @job(rate_limit="api-calls") '
                            'starts at most 30 such jobs in any minute, across every supervisor. '
                            'A job may also give a rate of its own: @job(rate_limit="10/s").'),
              "[rate_limits]", '# api-calls = "30/m"']
    lines += ["", *_comment("Schedules: each tick enqueues its job once, whichever supervisor "
                            "sharing this storage computes it first. Uncomment to run "
                            f"{EXAMPLE_MODULE}:hello every five minutes."),
              "# [schedules.hello]", f'# job = "{EXAMPLE_MODULE}:hello"',
              '# cron = "*/5 * * * *"    # or: every = 300 (seconds)',
              '# timezone = "UTC"        # cron only: its fields read in this zone (DST as cron does)',
              '# args = ["scheduler"]',
              '# catch_up = "latest"     # after downtime: latest (one run), all, none',
              '# overlap = "allow"       # or "skip" while the last run is pending or running']
    return "\n".join(lines) + "\n"


def write_default_config(path) -> list[str]:
    """Write `default_config_text()` to `path` and, beside it, the example job module
    (myjobs.py) it names, unless that file exists. Never overwrites the config file.
    Returns the files written, as named (the module's path joined to the config's
    directory)."""
    name = os.fsdecode(path)
    if not name:
        raise ConfigError("'' is not a file name: give the file to write, e.g. "
                          "`jobrt init supervisor.toml` (or no argument for ./supervisor.toml)")
    if os.path.isdir(name):
        raise ConfigError("is a directory: give the file to write, e.g. "
                          f"`jobrt init {os.path.join(name, 'supervisor.toml')}`", name)
    written = [name]
    _write_new(name, default_config_text(), "already exists; not overwriting it (remove it or "
                                            "choose another path)")
    module = os.path.join(os.path.dirname(name), EXAMPLE_MODULE + ".py")
    try:
        _write_new(module, EXAMPLE_MODULE_TEXT, None)
        written.append(module)
    except FileExistsError:
        pass  # the user's own jobs: kept
    return written


def _write_new(name: str, text: str, exists: str | None) -> None:
    """Create `name` with `text`; FileExistsError (exists=None) or ConfigError(exists)."""
    try:
        with open(name, "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        if exists is None:
            raise
        raise ConfigError(exists, name) from None
    except FileNotFoundError:
        directory = os.path.dirname(name) or "."
        raise ConfigError(f"cannot write the file: the directory {directory} does not exist "
                          f"(create it first)", name) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot write the file: {_reason(err)}", name) from None


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, 76)]


def _assignment(key: str, value: Any) -> str:
    """`key = value` in TOML, as tomli-w writes it (a list spans lines, one item each)."""
    text = tomli_w.dumps({key: value}).rstrip("\n")
    if not text.startswith(f"{key} = "):  # a table would need a [header] of its own
        raise TypeError(f"{key}: no `key = value` form in TOML for {type(value).__name__} {value!r}")
    return text
