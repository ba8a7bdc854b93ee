"""The commands that look at and tend a deployment: status, workers, health, job,
failed, clear, systemd-unit; and what every `jobrt` command shares (exit statuses,
`--config`, JSON output). `runtime.cli.main` parses the command line and maps errors
to exit statuses.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import orjson

from runtime.errors import ConfigError, JobNotFound, JobrtError, StorageError
from runtime.numbers import INT_MAX  # job ids and limits are positive 64-bit integers, in every backend

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

HEALTH_EPILOG = """\
exit status: 0 healthy, 1 warning, 2 critical. A config error (or a bad command
line) also exits 2, with one line on stderr (and, with --json, a document whose
status is critical on stdout): a monitor treats it as critical too. Storage that
cannot be read, or does not exist yet, is critical. Thresholds are the [health]
settings of the config; see `jobrt init`."""


class UsageError(JobrtError):
    """A bad command line: exit 2."""


class CommandError(JobrtError):
    """A command that did part of its work and must still fail: `fields` are the JSON
    document it would have printed (the error and exit status are added to it)."""

    def __init__(self, message: str, status: int = EXIT_FAILURE, fields: dict | None = None):
        super().__init__(message)
        self.status = status
        self.fields = fields or {}

SYSTEMD_EPILOG = """\
install: jobrt systemd-unit --config /etc/jobrt/supervisor.toml > /etc/systemd/system/jobrt.service
         systemctl daemon-reload && systemctl enable --now jobrt
Notes on the choices go to stderr; the unit (commented) to stdout."""


def config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=os.environ.get("JOBRT_CONFIG", "supervisor.toml"),
                        help="path to supervisor.toml (default: $JOBRT_CONFIG or ./supervisor.toml)")


def json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help='print one JSON document, also on errors: {"error": ..., "exit": N}')


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def _whole(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text) if len(text.strip()) <= 40 else None  # no 5000-digit conversions
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {what}: a whole number from {low} to {high}, "
                                         f"got {_shown(text)}")
    return value


def job_call_args(parser) -> None:
    """The job name and its --args/--kwargs, as `jobrt enqueue` and `jobrt run` take them."""
    config_arg(parser)
    parser.add_argument("name", help="job name, e.g. jobs.examples:echo")
    parser.add_argument("--args", default="[]", metavar="JSON|@FILE|-",
                        help="JSON list of positional arguments (@FILE: read from a file, -: stdin)")
    parser.add_argument("--kwargs", default="{}", metavar="JSON|@FILE|-",
                        help="JSON object of keyword arguments (@FILE: read from a file, -: stdin)")


def job_id(text: str) -> int:
    """A job id on the command line: a positive 64-bit integer."""
    return _whole(text, 1, INT_MAX, "a job id")


def limit(text: str) -> int:
    return _whole(text, 1, INT_MAX, "a number of jobs")


def queue_name(text: str) -> str:
    from runtime.config.settings import is_queue_name

    if not is_queue_name(text):
        raise argparse.ArgumentTypeError(f"must be a queue name (printable, no spaces, 1 to 200 "
                                         f"characters), got {_shown(text)}")
    return text


def _user_name(text: str) -> str:
    from runtime.config.settings import ACCOUNT  # the check a pool's `user` gets

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
    json_arg(status)

    workers = commands.add_parser("workers", help="the live workers, one per line")
    config_arg(workers)
    json_arg(workers)

    health = commands.add_parser(
        "health", help="check workers, backlog and failures: exit 0 healthy, 1 warning, 2 critical",
        epilog=HEALTH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(health)
    json_arg(health)

    show = commands.add_parser("job", help="one job's record")
    config_arg(show)
    show.add_argument("id", type=job_id, metavar="ID")
    json_arg(show)

    cancel = commands.add_parser("cancel", help="cancel jobs: pending ones never run, running ones "
                                 "are killed; exit 1 if any had ended or does not exist")
    config_arg(cancel)
    cancel.add_argument("ids", type=job_id, nargs="+", metavar="ID")
    json_arg(cancel)

    clear = commands.add_parser("clear", help="delete the pending jobs of a queue")
    config_arg(clear)
    clear.add_argument("--queue", required=True, type=queue_name)
    json_arg(clear)

    unit = commands.add_parser(
        "systemd-unit", help="print a systemd service unit that runs this config",
        epilog=SYSTEMD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(unit)
    unit.add_argument("--user", type=_user_name, metavar="NAME",
                      help="run the supervisor as this user (default: root, and each pool's `user`)")


def emit(document) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def load(args):
    from runtime.config.load import load_config

    return load_config(args.config)


def open_client_storage(cfg):
    """The storage of a command that only reads or tends jobs: it never creates a database."""
    from runtime.storage import open_storage

    return open_storage(cfg.storage_url, role="client", base_dir=cfg.base_dir, create=False)


@contextlib.contextmanager
def client_storage(args):
    storage = open_client_storage(load(args))
    try:
        yield storage
    finally:
        storage.close()


def _worker_line(worker: dict) -> str:
    queue = worker.get("queue")  # a balanced pool's worker serves one queue
    return (f"worker {worker['pid']:>7}  pool {worker['pool']:<12} {worker['state']:<9} "
            f"{worker['jobs']:>7} jobs  {worker['rss'] / 1048576:7.1f} MiB  on {worker['host']}"
            + (f"  queue {queue}" if queue is not None else ""))


def _balance_lines(supervisors: list[dict]) -> list[str]:
    """A line per balanced pool: its mode, max_workers and target per queue."""
    lines = []
    for supervisor in supervisors:
        for name, pool in sorted((supervisor.get("pools") or {}).items()):
            if pool.get("targets"):
                targets = ", ".join(f"{queue} {n}" for queue, n in pool["targets"].items())
                lines.append(f"pool {name} ({pool['balance']}, max_workers {pool['max_workers']}) on "
                             f"{supervisor['host']}: workers per queue {targets}")
    return lines


def cmd_status(args) -> int:
    from runtime.cli.health import live_supervisors, live_workers, read_stranded

    now = time.time()
    with client_storage(args) as storage:
        queues = storage.counts(now)
        rows = live_supervisors(storage, now)
        supervisors, workers = live_workers(storage, now, rows)
        stranded = read_stranded(storage, now, rows) or []  # None (no live supervisor): not judged
        paused = list(storage.paused_queues())
    if args.json:
        emit({"queues": queues, "workers": workers, "supervisors": supervisors,
              "problems": [problem.to_dict() for problem in stranded], "paused_queues": paused})
        return EXIT_OK
    columns = ("pending", "delayed", "running", "succeeded", "failed")
    print(f"{'queue':<20}" + "".join(f"{c:>11}" for c in columns))
    for name, counts in sorted(queues.items()):
        print(f"{name:<20}" + "".join(f"{counts.get(c, 0):>11}" for c in columns)
              + ("  (paused)" if name in paused else ""))
    if not queues:
        print("(no jobs)")
    if paused:
        print(f"paused queues (no new job starts; `jobrt resume --queue Q`): {', '.join(paused)}")
    for problem in stranded:
        print(problem.message())
    print()
    if not workers:
        print("no live workers (is `jobrt start` running?)")
    for worker in workers:
        print(_worker_line(worker))
    for line in _balance_lines(supervisors):
        print(line)
    return EXIT_OK


def cmd_workers(args) -> int:
    from runtime.cli.health import live_workers

    with client_storage(args) as storage:
        supervisors, workers = live_workers(storage, time.time())
    if args.json:
        emit(workers)
        return EXIT_OK
    if not workers:
        print("no live workers (is `jobrt start` running?)")
    for worker in workers:
        print(f"{_worker_line(worker)}  supervisor {worker['supervisor']}")
    for line in _balance_lines(supervisors):
        print(line)
    return EXIT_OK


def cmd_health(args) -> int:
    from runtime.cli import health

    from runtime.storage import StorageUrlError

    cfg = load(args)  # a config error propagates: exit 2, like critical
    counts = None
    try:
        storage = open_client_storage(cfg)
        try:
            counts = health.gather(storage, time.time())
        finally:
            storage.close()
        report = health.evaluate(cfg.health, counts)
    except StorageUrlError:
        raise  # a config error, not an outage
    except StorageError as exc:
        report = health.unreachable(exc)
    if args.json:
        emit(report.to_dict())
    else:
        print("\n".join(report.reasons) or health.summary(counts))
        if report.paused_queues:
            print(f"note: paused queues (no new job starts): {', '.join(report.paused_queues)}")
    return report.exit_status


def print_record(record, full: bool) -> None:
    data = record.to_dict()
    shown = ["id", "name", "queue", "state", "attempts", "error", "result", "args", "kwargs"]
    if data["options"]:
        shown.append("options")
    if record.exceptions or "max_exceptions" in data["options"]:
        shown.insert(5, "exceptions")
    shown += [key for key in ("unique_key", "overlap_key", "rate_key", "batch_id", "chain_id")
              if data[key] is not None]
    if data["tags"]:
        shown.append("tags")
    for key in shown:
        print(f"{key:>12}: {data[key] if not isinstance(data[key], (dict, list)) else orjson.dumps(data[key]).decode()}")
    for key in ("created_at", "started_at", "finished_at", "available_at"):
        if data[key]:
            print(f"{key:>12}: {_when(data[key])}")
    if full and record.traceback:
        print(record.traceback.rstrip())


def _when(stamp: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    except (OverflowError, ValueError, OSError):  # a delay of centuries, via the Python API
        return f"{stamp:.0f} (seconds since the epoch)"


def cmd_job(args) -> int:
    with client_storage(args) as storage:
        record = storage.get(args.id)
    if record is None:
        raise JobNotFound(f"no job with id {args.id} (it may never have existed, or was pruned)")
    if args.json:
        emit(record.to_dict())
    else:
        print_record(record, full=True)
    return EXIT_OK


_CANCELLED = {"pending": ("cancelled", "cancelled: it will never run"),
              "running": ("cancelling", "running: its supervisor kills its worker, and it ends "
                                        "cancelled (unless it finishes first)")}


def cmd_cancel(args) -> int:
    with client_storage(args) as storage:
        now = time.time()
        found = [(i, storage.cancel(i, now)) for i in dict.fromkeys(args.ids)]
        if any(before == "running" for _, before in found):
            storage.notify()  # the supervisor running it hears at once on this host
    jobs = []
    for i, before in found:
        if before is None:
            outcome, text = "not found", "no such job (it may never have existed, or was pruned)"
        else:
            outcome, text = _CANCELLED.get(before, ("unchanged", f"already {before}; left as it is"))
        jobs.append({"id": i, "was": before, "outcome": outcome})
        if not args.json:
            print(f"job {i}: {text}")
    if args.json:
        emit({"jobs": jobs})
    return EXIT_OK if all(job["outcome"] in ("cancelled", "cancelling") for job in jobs) else EXIT_FAILURE


def cmd_clear(args) -> int:
    with client_storage(args) as storage:
        count = storage.clear(args.queue)
    if args.json:
        emit({"cleared": count})
    else:
        print(f"cleared {count} pending job{'s' if count != 1 else ''} from queue {args.queue}")
    return EXIT_OK


def cmd_systemd_unit(args) -> int:
    from runtime.cli.systemd_unit import render

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
            "cancel": cmd_cancel, "clear": cmd_clear,
            "systemd-unit": cmd_systemd_unit}
