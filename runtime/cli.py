"""The `jobrt` command line. Exit status: 0 ok, 1 operational failure, 2 usage or config error.

`--json` output is one JSON document on stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from .errors import ConfigError, JobNotFound, JobrtError, PayloadError, StorageError, UnknownJob

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=os.environ.get("JOBRT_CONFIG", "supervisor.toml"),
                        help="path to supervisor.toml (default: $JOBRT_CONFIG or ./supervisor.toml)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobrt", description="jobrt: a multiprocessing job runtime")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="write a commented default supervisor.toml")
    init.add_argument("path", nargs="?", default="supervisor.toml")

    start = commands.add_parser("start", help="run the supervisor in the foreground")
    _config_arg(start)
    start.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    start.add_argument("--log-format", default="text", choices=["text", "json"],
                       help="text for people (default), json: one JSON object per line, also for job output")

    enqueue = commands.add_parser("enqueue", help="store a job; prints its id")
    _config_arg(enqueue)
    enqueue.add_argument("name", help="job name, e.g. jobs.examples:echo")
    enqueue.add_argument("--args", default="[]", help="JSON list of positional arguments")
    enqueue.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    enqueue.add_argument("--queue", help="queue name (default: the job's own)")
    enqueue.add_argument("--delay", type=float, default=0.0, help="seconds before it may run")
    enqueue.add_argument("--priority", type=int, help="higher runs first within a queue")

    status = commands.add_parser("status", help="jobs per queue and state, live workers")
    _config_arg(status)
    status.add_argument("--json", action="store_true")

    show = commands.add_parser("job", help="one job's record")
    _config_arg(show)
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")

    failed = commands.add_parser("failed", help="the failed-jobs store")
    failed_commands = failed.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "list failed jobs, newest first"), ("show", "one failed job with its traceback"),
                       ("retry", "put failed jobs back in their queue"), ("forget", "delete failed jobs"),
                       ("flush", "delete every failed job")):
        sub = failed_commands.add_parser(name, help=text)
        _config_arg(sub)
        sub.add_argument("--json", action="store_true")
        if name in ("show", "forget"):
            sub.add_argument("ids", type=int, nargs="+" if name == "forget" else 1, metavar="ID")
        if name == "retry":
            sub.add_argument("ids", type=int, nargs="*", metavar="ID")
            sub.add_argument("--all", action="store_true", help="retry every failed job")
        if name == "list":
            sub.add_argument("--limit", type=int, default=100)

    clear = commands.add_parser("clear", help="delete the pending jobs of a queue")
    _config_arg(clear)
    clear.add_argument("--queue", required=True)
    clear.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, UnknownJob, PayloadError) as exc:
        print(f"jobrt: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JobNotFound as exc:
        print(f"jobrt: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except StorageError as exc:
        print(f"jobrt: {exc}", file=sys.stderr)
        return EXIT_USAGE if args.command == "start" else EXIT_FAILURE
    except JobrtError as exc:
        print(f"jobrt: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `jobrt status | head`
        return EXIT_OK


def _emit(document) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def _load(args):
    from .config import load_config

    return load_config(args.config)


def _storage(args):
    from .storage import open_storage

    cfg = _load(args)
    return open_storage(cfg.storage_url, role="client", base_dir=cfg.base_dir)


def cmd_init(args) -> int:
    from .config import write_default_config

    write_default_config(args.path)
    print(f"wrote {args.path}; start it with: jobrt start --config {args.path}")
    return EXIT_OK


def cmd_start(args) -> int:
    from .logs import setup_logging
    from .registry import collect
    from .supervisor import Supervisor

    cfg = _load(args)
    registry = collect(cfg.modules, cfg.module_path, cfg.path)
    setup_logging(args.log_level, args.log_format)
    return Supervisor(cfg, registry, log_format=args.log_format).run()


def cmd_enqueue(args) -> int:
    from .client import connect

    try:
        positional = orjson.loads(args.args)
        keywords = orjson.loads(args.kwargs)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"--args/--kwargs must be JSON ({exc})") from None
    if not isinstance(positional, list) or not isinstance(keywords, dict):
        raise PayloadError("--args must be a JSON list and --kwargs a JSON object")
    options = {"_delay": args.delay}
    if args.queue:
        options["_queue"] = args.queue
    if args.priority is not None:
        options["_priority"] = args.priority
    with connect(config=args.config) as queue:
        print(queue.enqueue_many([(args.name, positional, keywords, options)])[0])
    return EXIT_OK


def _live_workers(storage, now: float) -> tuple[list, list]:
    supervisors, workers = [], []
    for row in storage.supervisors():
        if row.heartbeat_at < now - 30:
            continue  # a supervisor that stopped heartbeating is not running anything
        supervisors.append({"owner": row.owner, "host": row.host, "pid": row.pid,
                            "heartbeat_at": row.heartbeat_at, "rate": row.info.get("rate"),
                            "done": row.info.get("done")})
        for worker in row.info.get("workers", []):
            workers.append(dict(worker, supervisor=row.owner, host=row.host))
    return supervisors, workers


def cmd_status(args) -> int:
    storage = _storage(args)
    now = time.time()
    queues = storage.counts(now)
    supervisors, workers = _live_workers(storage, now)
    if args.json:
        _emit({"queues": queues, "workers": workers, "supervisors": supervisors})
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
        print(f"worker {worker['pid']:>7}  pool {worker['pool']:<12} {worker['state']:<9} "
              f"{worker['jobs']:>7} jobs  {worker['rss'] / 1048576:7.1f} MiB  on {worker['host']}")
    return EXIT_OK


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
        _emit(record.to_dict())
    else:
        _print_record(record, full=True)
    return EXIT_OK


def cmd_failed(args) -> int:
    storage = _storage(args)
    action = args.action
    if action == "list":
        records = storage.failed(args.limit)
        if args.json:
            _emit([r.to_dict() for r in records])
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
        _emit(record.to_dict()) if args.json else _print_record(record, full=True)
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
        _emit({action: count})
    else:
        print(f"{action}: {count} job{'s' if count != 1 else ''}")
    missing = action in ("retry", "forget") and args.ids and count < len(args.ids)
    return EXIT_FAILURE if missing else EXIT_OK


def cmd_clear(args) -> int:
    count = _storage(args).clear(args.queue)
    if args.json:
        _emit({"cleared": count})
    else:
        print(f"cleared {count} pending job{'s' if count != 1 else ''} from queue {args.queue}")
    return EXIT_OK


COMMANDS = {"init": cmd_init, "start": cmd_start, "enqueue": cmd_enqueue, "status": cmd_status,
            "job": cmd_job, "failed": cmd_failed, "clear": cmd_clear}


if __name__ == "__main__":
    sys.exit(main())
