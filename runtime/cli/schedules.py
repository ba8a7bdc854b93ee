"""`jobrt schedule list|run NAME`: the [schedules.NAME] of a config as operators see them
(expression, next run, last tick and its job's state), and a run outside the ticks."""

from __future__ import annotations

import contextlib
import sys
import time

from runtime.cli.admin import (
    EXIT_OK, UsageError, _when, config_arg, emit, json_arg, load, open_client_storage,
)


def add_parser(commands) -> None:
    schedule = commands.add_parser("schedule", help="schedules: next runs, last ticks, run one now")
    actions = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="each schedule: expression, next run, last tick "
                                              "and its job's state")
    config_arg(listing)
    json_arg(listing)
    run = actions.add_parser("run", help="enqueue a schedule's job now, outside its ticks "
                                         "(prints the job id)")
    config_arg(run)
    json_arg(run)
    run.add_argument("name", help="the schedule's name, as in [schedules.NAME]")


def cmd_schedule(args) -> int:
    cfg = load(args)
    return (_list if args.action == "list" else _run)(args, cfg)


def _list(args, cfg) -> int:
    storage = open_client_storage(cfg)
    try:
        last = storage.last_ticks(list(cfg.schedules))
    finally:
        storage.close()
    now = time.time()
    documents = []
    for name, schedule in cfg.schedules.items():
        tick = last.get(name)
        # the next tick after now (after the last row, should another host's clock be ahead)
        next_run = schedule.next_after(max(now, tick.tick_at) if tick else now)
        documents.append({
            "name": name, "job": schedule.job, "expression": schedule.expression,
            "cron": schedule.cron, "every": schedule.every, "timezone": schedule.timezone,
            "catch_up": schedule.catch_up, "overlap": schedule.overlap, "next_run": next_run,
            "last_tick": tick.to_dict() if tick else None})
    if args.json:
        emit(documents)
        return EXIT_OK
    if not documents:
        print(f"no schedules in {cfg.path}")
    for doc in documents:
        print(_line(doc))
    return EXIT_OK


def _line(doc: dict) -> str:
    next_run = _when(doc["next_run"]) if doc["next_run"] is not None else "never"
    tick = doc["last_tick"]
    if tick is None:
        last = "no tick yet"
    else:
        last = f"{_when(tick['tick_at'])} {tick['outcome']}"
        if tick["job_id"] is not None:
            last += f" as job {tick['job_id']} ({tick['job_state'] or 'pruned'})"
        if tick["missed"]:
            last += f", {tick['missed']} missed before it"
    return f"{doc['name'][:24]:<24} {doc['expression'][:36]:<36} next {next_run}  last {last}"


def _run(args, cfg) -> int:
    from runtime.client import connect
    from runtime.config.schedules import check_jobs
    from runtime.schedules import tick_job

    schedule = cfg.schedules.get(args.name)
    if schedule is None:
        known = ", ".join(cfg.schedules) or "none"
        raise UsageError(f"schedule run: no schedule {args.name!r} in {cfg.path} (schedules: "
                         f"{known})")
    # What job modules print when imported goes to stderr: stdout holds the id.
    with contextlib.redirect_stdout(sys.stderr), connect(config=args.config) as queue:
        check_jobs({schedule.name: schedule}, queue, cfg.path)
        now = time.time()
        (job_id,) = queue.storage.enqueue([tick_job(queue, schedule, now, now)])
        queue.storage.notify()
    if args.json:
        emit({"schedule": schedule.name, "id": job_id, "scheduled_at": now})
    else:
        print(job_id)
    return EXIT_OK


COMMANDS = {"schedule": cmd_schedule}
