"""The options of `jobrt start` for development and one-shot runs: --reload (replace the
workers when a job module's file changes) and --until-empty, --max-jobs N, --max-time S
(work, then stop cleanly with exit 0). Their logic is the supervisor's
(`dev_reload`, `stopping_rules`); this module parses them and builds those objects.
"""

from __future__ import annotations

import argparse
import math

from runtime.cli import admin
from runtime.numbers import INT_MAX

MAX_TIME = 100 * 365 * 86400  # 100 years: beyond that a limit is a mistake, not a plan


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_TIME):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, at most {MAX_TIME} "
                                         f"(100 years), got {admin._shown(text)}")
    return value


def _jobs(text: str) -> int:
    return admin._whole(text, 1, INT_MAX, "a number of jobs")


def add_arguments(start: argparse.ArgumentParser) -> None:
    start.add_argument("--reload", action="store_true",
                       help="for development: replace the workers (as SIGHUP does) when a job "
                            "module's file, or a project file it imports, changes; checked "
                            "every 0.5 s; a module that does not import keeps the old workers")
    start.add_argument("--until-empty", action="store_true",
                       help="stop (exit 0, as on SIGTERM) once no job is due on this supervisor's "
                            "queues and none runs here; delayed jobs do not keep it running "
                            "(for cron and CI)")
    start.add_argument("--max-jobs", type=_jobs, metavar="N",
                       help="stop (exit 0, as on SIGTERM) after N job runs ended here; runs under "
                            "way then still finish")
    start.add_argument("--max-time", type=_seconds, metavar="S",
                       help="stop (exit 0, as on SIGTERM) S seconds after starting")


def supervisor_options(args, modules, now: float) -> dict:
    """The Supervisor's keyword arguments for these options (none given: none)."""
    options = {}
    if args.until_empty or args.max_jobs is not None or args.max_time is not None:
        from runtime.supervisor.stopping_rules import StopRules

        options["stop_rules"] = StopRules(args.until_empty, args.max_jobs, args.max_time, now)
    if args.reload:
        from runtime.source_files import watched_files
        from runtime.supervisor.dev_reload import SourceWatch

        options["source_watch"] = SourceWatch(watched_files(modules), now)
    return options
