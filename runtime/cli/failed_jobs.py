"""`jobrt failed list|show|retry|forget|flush`: the failed-jobs store."""

from __future__ import annotations

import time

from runtime.cli.admin import (
    EXIT_FAILURE, EXIT_OK, CommandError, UsageError, client_storage, config_arg, emit, job_id,
    json_arg, limit, print_record,
)
from runtime.cli.durations import duration, hours, seconds_text
from runtime.errors import JobNotFound
from runtime.storage.base import PRUNE_BATCH


def add_parser(commands) -> None:
    failed = commands.add_parser("failed", help="the failed-jobs store")
    failed_commands = failed.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "list failed jobs, newest first"), ("show", "one failed job with its traceback"),
                       ("retry", "put failed jobs back in their queue"), ("forget", "delete failed jobs"),
                       ("flush", "delete every failed job"),
                       ("prune", "delete failed jobs older than a duration (--older-than 7d)")):
        sub = failed_commands.add_parser(name, help=text)
        config_arg(sub)
        json_arg(sub)
        if name in ("show", "forget"):
            sub.add_argument("ids", type=job_id, nargs="+" if name == "forget" else 1, metavar="ID")
        if name == "retry":
            sub.add_argument("ids", type=job_id, nargs="*", metavar="ID")
            sub.add_argument("--all", action="store_true", help="retry every failed job")
        if name == "prune":
            sub.add_argument("--older-than", type=duration, metavar="DURATION",
                             help="e.g. 90s, 30m, 24h, 7d (s, m, h, d: seconds to days)")
            sub.add_argument("--hours", type=hours, metavar="N",
                             help="the same in hours (Laravel's queue:prune-failed --hours)")
        if name == "list":
            sub.add_argument("--limit", type=limit, default=100, help="at most this many (default 100)")


_STATE_PHRASES = {"pending": "it is pending", "running": "it is running", "succeeded": "it succeeded",
                  "cancelled": "it was cancelled"}


def _not_failed(job_id_: int, record) -> str:
    """Why a job id given to `failed show/retry/forget` is not in the failed-jobs store."""
    if record is None:
        return f"no job with id {job_id_} (it may never have existed, or was pruned)"
    return f"job {job_id_} is not failed: {_STATE_PHRASES.get(record.state, f'it is {record.state}')}"


def cmd_failed(args) -> int:
    with client_storage(args) as storage:
        return _failed(storage, args)


def _failed(storage, args) -> int:
    action = args.action
    if action == "list":
        records = storage.failed(args.limit)
        if args.json:
            emit([r.to_dict() for r in records])
        else:
            for r in records:
                print(f"{r.id:>8}  {r.name:<32} {r.queue:<12} tries {r.attempts:<3} {(r.error or '')[:80]}")
            if not records:
                print("no failed jobs")
        return EXIT_OK
    if action == "show":
        record = storage.get(args.ids[0])
        if record is None or record.state != "failed":
            raise JobNotFound(_not_failed(args.ids[0], record))
        emit(record.to_dict()) if args.json else print_record(record, full=True)
        return EXIT_OK
    if action == "prune":
        return _prune(storage, args)
    problems: list[str] = []
    if action == "retry" and not args.all:
        if not args.ids:
            raise UsageError("failed retry needs job ids or --all")
    if action == "retry" and args.all:
        if args.ids:
            raise UsageError("failed retry takes job ids or --all, not both")
        count = storage.retry_failed(None, time.time())
    elif action in ("retry", "forget"):
        ids = list(dict.fromkeys(args.ids))  # each once, in the order given
        failed_ids = []
        for job_id_ in ids:
            record = storage.get(job_id_)
            if record is not None and record.state == "failed":
                failed_ids.append(job_id_)
            else:
                problems.append(_not_failed(job_id_, record))
        if action == "retry":
            count = storage.retry_failed(failed_ids, time.time()) if failed_ids else 0
        else:
            count = sum(1 for job_id_ in failed_ids if storage.forget(job_id_))
        if count < len(failed_ids):
            problems.append(_lost_race(storage, action, failed_ids))
    else:
        count = storage.flush_failed()
    if action == "retry" and count:
        storage.notify()
    if not args.json:
        print(f"{action}: {count} job{'s' if count != 1 else ''}")
    if problems:
        raise CommandError("; ".join(problems), EXIT_FAILURE, {action: count})
    if args.json:
        emit({action: count})
    return EXIT_OK


def _lost_race(storage, action: str, failed_ids: list[int]) -> str:
    """Why some failed jobs were not retried or forgotten after all."""
    still = [i for i in failed_ids if (r := storage.get(i)) is not None and r.state == "failed"]
    if action == "retry" and still:
        return (f"job{'s' if len(still) > 1 else ''} {', '.join(map(str, still))} stayed failed: "
                f"another job with the same unique key is pending or running")
    return f"{len(failed_ids)} jobs were failed, but some changed meanwhile (another jobrt command?)"


def _prune(storage, args) -> int:
    """Delete the failed jobs that ended more than --older-than ago, a short transaction
    per PRUNE_BATCH, so supervisors claim in between."""
    if (args.older_than is None) == (args.hours is None):
        raise UsageError("failed prune needs --older-than DURATION (e.g. 7d) or --hours N, one of the two")
    age = args.older_than if args.hours is None else args.hours
    before, count = time.time() - age, 0
    while True:
        pruned = storage.prune_failed(before, PRUNE_BATCH)
        count += pruned
        if pruned < PRUNE_BATCH:
            break
    if args.json:
        emit({"prune": count, "older_than": age})
    else:
        print(f"pruned {count} failed job{'s' if count != 1 else ''} that failed more than "
              f"{seconds_text(age)} ago")
    return EXIT_OK


COMMANDS = {"failed": cmd_failed}
