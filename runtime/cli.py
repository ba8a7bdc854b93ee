"""The `jobrt` command line. Exit status: 0 ok, 1 operational failure, 2 usage or config error
(`jobrt health` also exits 1 for a warning and 2 for critical).

`--json` output is one JSON document on stdout; diagnostics go to stderr. This
module parses the command line, runs init/start/enqueue and maps errors to exit
statuses; the commands that inspect and tend a deployment live in `cli_admin`.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from . import cli_admin
from .cli_admin import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_arg, load
from .errors import ConfigError, JobNotFound, JobrtError, PayloadError, StorageError, UnknownJob

__all__ = ["main", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobrt", description="jobrt: a multiprocessing job runtime")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="write a commented default supervisor.toml")
    init.add_argument("path", nargs="?", default="supervisor.toml")

    start = commands.add_parser("start", help="run the supervisor in the foreground")
    config_arg(start)
    start.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    start.add_argument("--log-format", default="text", choices=["text", "json"],
                       help="text for people (default), json: one JSON object per line, also for job output")

    enqueue = commands.add_parser("enqueue", help="store a job; prints its id")
    config_arg(enqueue)
    enqueue.add_argument("name", help="job name, e.g. jobs.examples:echo")
    enqueue.add_argument("--args", default="[]", help="JSON list of positional arguments")
    enqueue.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    enqueue.add_argument("--queue", help="queue name (default: the job's own)")
    enqueue.add_argument("--delay", type=float, default=0.0, help="seconds before it may run")
    enqueue.add_argument("--priority", type=int, help="higher runs first within a queue")
    enqueue.add_argument("--json", action="store_true", help='print {"id": ID}')

    cli_admin.add_parsers(commands)
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


def cmd_init(args) -> int:
    from .config import write_default_config

    write_default_config(args.path)
    print(f"wrote {args.path}; start it with: jobrt start --config {args.path}")
    return EXIT_OK


def cmd_start(args) -> int:
    from .logs import setup_logging
    from .process import require_pidfd
    from .registry import collect
    from .supervisor import Supervisor

    require_pidfd()
    cfg = load(args)
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
        job_id = queue.enqueue_many([(args.name, positional, keywords, options)])[0]
    if args.json:
        cli_admin.emit({"id": job_id})
    else:
        print(job_id)
    return EXIT_OK


COMMANDS = {"init": cmd_init, "start": cmd_start, "enqueue": cmd_enqueue, **cli_admin.COMMANDS}


if __name__ == "__main__":
    sys.exit(main())
