"""The commands that look at and tend a deployment: status, workers, health, job,
failed, clear, systemd-unit; and what every `jobrt` command shares (exit statuses,
`--config`, JSON output). `runtime.cli` parses the command line and maps errors
to exit statuses.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from .errors import ConfigError, JobNotFound, StorageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

HEALTH_EPILOG = """\
exit status: 0 healthy, 1 warning, 2 critical. A config error (or a bad command
line) also exits 2, with one line on stderr and nothing on stdout: a monitor
treats it as critical too. Storage that cannot be read is critical. Thresholds
are the [health] settings of the config; see `jobrt init`."""

SYSTEMD_EPILOG = """\
install: jobrt systemd-unit --config /etc/jobrt/supervisor.toml > /etc/systemd/system/jobrt.service
         systemctl daemon-reload && systemctl enable --now jobrt
Notes on the choices go to stderr; the unit (commented) to stdout."""


def config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=os.environ.get("JOBRT_CONFIG", "supervisor.toml"),
                        help="path to supervisor.toml (default: $JOBRT_CONFIG or ./supervisor.toml)")


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _user_name(text: str) -> str:
    from .settings import ACCOUNT  # the check a pool's `user` gets

    try:
        if text:
            return ACCOUNT.convert(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a user name")


def add_parsers(commands) -> None:
    """The subcommands of this module, on `jobrt`'s subparsers."""
    status = commands.add_parser("status", help="jobs per queue and state, live workers")
    config_arg(status)
    _json_arg(status)

    workers = commands.add_parser("workers", help="the live workers, one per line")
    config_arg(workers)
    _json_arg(workers)

    health = commands.add_parser(
        "health", help="check workers, backlog and failures: exit 0 healthy, 1 warning, 2 critical",
        epilog=HEALTH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(health)
    _json_arg(health)

    show = commands.add_parser("job", help="one job's record")
    config_arg(show)
    show.add_argument("id", type=int)
    _json_arg(show)

    failed = commands.add_parser("failed", help="the failed-jobs store")
    failed_commands = failed.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "list failed jobs, newest first"), ("show", "one failed job with its traceback"),
                       ("retry", "put failed jobs back in their queue"), ("forget", "delete failed jobs"),
                       ("flush", "delete every failed job")):
        sub = failed_commands.add_parser(name, help=text)
        config_arg(sub)
        _json_arg(sub)
        if name in ("show", "forget"):
            sub.add_argument("ids", type=int, nargs="+" if name == "forget" else 1, metavar="ID")
        if name == "retry":
            sub.add_argument("ids", type=int, nargs="*", metavar="ID")
            sub.add_argument("--all", action="store_true", help="retry every failed job")
        if name == "list":
            sub.add_argument("--limit", type=int, default=100)

    clear = commands.add_parser("clear", help="delete the pending jobs of a queue")
    config_arg(clear)
    clear.add_argument("--queue", required=True)
    _json_arg(clear)

    unit = commands.add_parser(
        "systemd-unit", help="print a systemd service unit that runs this config",
        epilog=SYSTEMD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(unit)
    unit.add_argument("--user", type=_user_name, metavar="NAME",
                      help="run the supervisor as this user (default: root, and each pool's `user`)")


def emit(document) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def load(args):
    from .config import load_config

    return load_config(args.config)


def open_client_storage(cfg):
    from .storage import open_storage

    return open_storage(cfg.storage_url, role="client", base_dir=cfg.base_dir)


def _storage(args):
    return open_client_storage(load(args))


def _worker_line(worker: dict) -> str:
    return (f"worker {worker['pid']:>7}  pool {worker['pool']:<12} {worker['state']:<9} "
            f"{worker['jobs']:>7} jobs  {worker['rss'] / 1048576:7.1f} MiB  on {worker['host']}")


def cmd_status(args) -> int:
    from .health import live_workers

    storage = _storage(args)
    now = time.time()
    queues = storage.counts(now)
    supervisors, workers = live_workers(storage, now)
    if args.json:
        emit({"queues": queues, "workers": workers, "supervisors": supervisors})
        return EXIT_OK
    columns = ("pending", "delayed", "running", "succeeded", "failed")
    print(f"{'queue':<20}" + "".join(f"{c:>11}" for c in columns))
    for name, counts in sorted(queues.items()):
        print(f"{name:<20}" + "".join(f"{counts.get(c, 0):>11}" for c in columns))
    if not queues:
        print("(no jobs)")
    print()
    if not workers:
        print("no live workers (is `jobrt start` running?)")
    for worker in workers:
        print(_worker_line(worker))
    return EXIT_OK


def cmd_workers(args) -> int:
    from .health import live_workers

    _, workers = live_workers(_storage(args), time.time())
    if args.json:
        emit(workers)
        return EXIT_OK
    if not workers:
        print("no live workers (is `jobrt start` running?)")
    for worker in workers:
        print(f"{_worker_line(worker)}  supervisor {worker['supervisor']}")
    return EXIT_OK


def cmd_health(args) -> int:
    from . import health

    cfg = load(args)  # a config error propagates: exit 2, like critical
    counts = None
    try:
        counts = health.gather(open_client_storage(cfg), time.time())
        report = health.evaluate(cfg.health, counts)
    except StorageError as exc:
        report = health.unreachable(exc)
    if args.json:
        emit(report.to_dict())
    else:
        print("\n".join(report.reasons) or health.summary(counts))
    return report.exit_status


def _print_record(record, full: bool) -> None:
    data = record.to_dict()
    for key in ("id", "name", "queue", "state", "attempts", "error", "result", "args", "kwargs"):
        print(f"{key:>10}: {data[key] if not isinstance(data[key], (dict, list)) else orjson.dumps(data[key]).decode()}")
    for key in ("created_at", "started_at", "finished_at", "available_at"):
        if data[key]:
            print(f"{key:>10}: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(data[key]))}")
    if full and record.traceback:
        print(record.traceback.rstrip())


def cmd_job(args) -> int:
    record = _storage(args).get(args.id)
    if record is None:
        raise JobNotFound(f"no job with id {args.id} (it may never have existed, or was pruned)")
    if args.json:
        emit(record.to_dict())
    else:
        _print_record(record, full=True)
    return EXIT_OK


def cmd_failed(args) -> int:
    storage = _storage(args)
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
            raise JobNotFound(f"no failed job with id {args.ids[0]}")
        emit(record.to_dict()) if args.json else _print_record(record, full=True)
        return EXIT_OK
    if action == "retry":
        if not args.ids and not args.all:
            print("jobrt: failed retry needs job ids or --all", file=sys.stderr)
            return EXIT_USAGE
        count = storage.retry_failed(None if args.all else args.ids, time.time())
        storage.notify()
    elif action == "forget":
        count = sum(1 for job_id in args.ids if storage.forget(job_id))
    else:
        count = storage.flush_failed()
    if args.json:
        emit({action: count})
    else:
        print(f"{action}: {count} job{'s' if count != 1 else ''}")
    missing = action in ("retry", "forget") and args.ids and count < len(args.ids)
    return EXIT_FAILURE if missing else EXIT_OK


def cmd_clear(args) -> int:
    count = _storage(args).clear(args.queue)
    if args.json:
        emit({"cleared": count})
    else:
        print(f"cleared {count} pending job{'s' if count != 1 else ''} from queue {args.queue}")
    return EXIT_OK


def cmd_systemd_unit(args) -> int:
    from .unitfile import render

    cfg = load(args)
    try:
        text, warnings = render(cfg, user=args.user)
    except ValueError as exc:  # a path no unit file can hold
        raise ConfigError(str(exc), cfg.path) from None
    except StorageError as exc:  # an sqlite url naming no file
        raise ConfigError(str(exc), cfg.path, "storage.url") from None
    for warning in warnings:
        print(f"jobrt: note: {warning}", file=sys.stderr)
    sys.stdout.write(text)
    return EXIT_OK


COMMANDS = {"status": cmd_status, "workers": cmd_workers, "health": cmd_health, "job": cmd_job,
            "failed": cmd_failed, "clear": cmd_clear, "systemd-unit": cmd_systemd_unit}
