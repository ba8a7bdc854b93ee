"""The `jobrt` command line. Exit status: 0 ok, 1 operational failure, 2 usage or config error
(`jobrt health` also exits 1 for a warning and 2 for critical).

`--json` output is one JSON document on stdout; diagnostics go to stderr. This
module parses the command line, runs init/start/enqueue and maps errors to exit
statuses; the commands that inspect and tend a deployment live in `cli_admin`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

from runtime.cli import (
    admin, batches, bench, chains, dashboard, failed_jobs, job_list, queue_controls, run_job, schedules,
    start_options,
)
from runtime.cli.admin import (
    EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError, UsageError, config_arg, load, queue_name,
)
from runtime.errors import ConfigError, JobNotFound, JobrtError, PayloadError, StorageError, UnknownJob
from runtime.storage import StorageUrlError

__all__ = ["main", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]

VERSION = "0.1.0"  # pyproject.toml's version, for `jobrt --version` when jobrt is not installed
MAX_DELAY = 100 * 365 * 86400  # 100 years: beyond that a delay is a mistake, not a plan
PRIORITY_RANGE = (-2**31, 2**31 - 1)
MAX_JSON_INPUT = 8 << 20  # bytes read from a file or stdin for --args/--kwargs
# Characters str.splitlines() breaks at: a diagnostic is one line, whatever a user typed.
_LINE_BREAKS = str.maketrans({c: c.encode("unicode_escape").decode() for c in
                              "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})

ARGS_HELP = """\
--args and --kwargs take JSON text, @FILE (read the JSON from a file) or - (from
stdin), so arguments up to the 1 MiB payload limit need not fit on a command
line. Integers must fit in 64 bits; NaN and Infinity are refused."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line by raising UsageError, so `main` prints
    it as one line (or one JSON document with --json), exit 2."""

    def error(self, message: str):
        command = self.prog.removeprefix("jobrt").strip()  # "failed retry"
        raise UsageError(f"{command + ': ' if command else ''}{message} (see `{self.prog} --help`)")


def _delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_DELAY):
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to {MAX_DELAY} "
                                         f"(100 years), got {admin._shown(text)}")
    return value


def _priority(text: str) -> int:
    low, high = PRIORITY_RANGE
    return admin._whole(text, low, high, "a priority")


def version() -> str:
    """The installed distribution's version; VERSION when run from a checkout, not installed."""
    from importlib import metadata

    try:
        return metadata.version("jobrt")
    except metadata.PackageNotFoundError:
        return VERSION


class _PrintVersion(argparse.Action):
    """`jobrt --version`: looks the version up only when asked (metadata lookups take time)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"jobrt {version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="jobrt", description="jobrt: a multiprocessing job runtime")
    parser.add_argument("--version", action=_PrintVersion, nargs=0, help="print jobrt's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init", help="write a commented default supervisor.toml and an example job module",
        description="Write a commented supervisor.toml with every default, and beside it "
                    "myjobs.py, a job module with an example job (kept if it exists).")
    init.add_argument("path", nargs="?", default="supervisor.toml")

    start = commands.add_parser("start", help="run the supervisor in the foreground")
    config_arg(start)
    start.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    start.add_argument("--log-format", default="text", choices=["text", "json"],
                       help="text for people (default), json: one JSON object per line, also for job output")
    start_options.add_arguments(start)

    enqueue = commands.add_parser("enqueue", help="store a job; prints its id", epilog=ARGS_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    admin.job_call_args(enqueue)
    enqueue.add_argument("--queue", type=queue_name, help="queue name (default: the job's own)")
    enqueue.add_argument("--delay", type=_delay, default=0.0, help="seconds before it may run")
    enqueue.add_argument("--priority", type=_priority, help="higher runs first within a queue")
    enqueue.add_argument("--tag", action="append", dest="tags", metavar="T",
                         help="a tag to find it by (`jobrt jobs --tag T`); repeat for more")
    enqueue.add_argument("--json", action="store_true",
                         help='print {"id": ID}; errors as {"error": ..., "exit": N}')

    run_job.add_parser(commands, ARGS_HELP)
    admin.add_parsers(commands)
    queue_controls.add_parsers(commands)
    job_list.add_parser(commands)
    failed_jobs.add_parser(commands)
    batches.add_parser(commands)
    chains.add_parser(commands)
    schedules.add_parser(commands)
    dashboard.add_parser(commands)
    bench.add_parser(commands)
    return parser


def _asks_json(argv: list[str]) -> bool:
    """Whether a command line that could not be parsed asked for --json (or an
    abbreviation of it), so its error is reported as a JSON document too."""
    for token in argv:
        if token == "--":
            return False
        if len(token) >= 3 and "--json".startswith(token):
            return True
    return False


def _one_line(text: str) -> str:
    return text.translate(_LINE_BREAKS)


def _report(message: str, status: int, json_mode: bool, command: str | None,
            fields: dict | None = None) -> int:
    """An error: one line on stderr and, with --json, one document on stdout."""
    message = _one_line(message)
    print(f"jobrt: {message}", file=sys.stderr)
    if json_mode:
        document = dict(fields or {})
        if command == "health":  # a monitor reading the document sees what the exit status says
            status_word = {EXIT_USAGE: "critical", EXIT_FAILURE: "warning"}.get(status, "critical")
            document.update(status=status_word, reasons=[f"{status_word}: {message}"],
                            checks=document.get("checks", {}))
        # Never a lone surrogate (from undecodable command-line bytes) in the JSON.
        document.update(error=message.encode("utf-8", "backslashreplace").decode(), exit=status)
        try:
            admin.emit(document)
        except BrokenPipeError:  # `jobrt ... --json | head -0`: the reader left
            _silence_stdout()
    return status


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so flushing it at exit is quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


def main(argv: list[str] | None = None) -> int:
    status = _run(argv)
    try:
        sys.stdout.flush()  # here, not at exit, where a reader that left would be a traceback
    except BrokenPipeError:
        _silence_stdout()
    except (OSError, ValueError):
        pass
    return status


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Until the command line parses, what it seems to ask for (for an error's JSON form).
    command = argv[0] if argv and argv[0] in COMMANDS else None
    json_mode, config = _asks_json(argv), None
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help printed its text; errors raise UsageError instead
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        command, json_mode = args.command, bool(getattr(args, "json", False))
        config = getattr(args, "config", None)
        return COMMANDS[command](args)
    except CommandError as exc:
        return _report(str(exc), exc.status, json_mode, command, exc.fields)
    except StorageUrlError as exc:  # the url of the config is wrong: a config error
        message = str(exc).removeprefix("storage url ")
        return _report(str(ConfigError(message, config, "storage.url")), EXIT_USAGE, json_mode, command)
    except (ConfigError, UnknownJob, PayloadError, UsageError) as exc:
        return _report(str(exc), EXIT_USAGE, json_mode, command)
    except JobNotFound as exc:
        return _report(str(exc), EXIT_FAILURE, json_mode, command)
    except StorageError as exc:  # unreachable, refused, full: operational, for start too
        return _report(str(exc), EXIT_FAILURE, json_mode, command)
    except JobrtError as exc:
        return _report(str(exc), EXIT_FAILURE, json_mode, command)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `jobrt status | head`
        _silence_stdout()
        return EXIT_OK


def cmd_init(args) -> int:
    import shlex

    from runtime.config.init_file import EXAMPLE_JOB, write_default_config

    written = write_default_config(args.path)
    config = shlex.quote(args.path)
    kept = "" if len(written) > 1 else f" (kept the existing {EXAMPLE_JOB.split(':')[0]}.py)"
    print(f"wrote {' and '.join(written)}{kept}\n"
          f"start it with: jobrt start --config {config}\n"
          f"then try:      jobrt enqueue --config {config} {EXAMPLE_JOB} --args '[\"world\"]'")
    return EXIT_OK


def cmd_start(args) -> int:
    from runtime.supervisor.log_setup import setup_logging
    from runtime.workers.process import require_pidfd
    from runtime.registry import collect
    from runtime.supervisor.loop import Supervisor

    require_pidfd()
    cfg = load(args)
    registry = collect(cfg.modules, cfg.module_path, cfg.path)
    setup_logging(args.log_level, args.log_format)
    options = start_options.supervisor_options(args, cfg.modules, time.monotonic())
    return Supervisor(cfg, registry, log_format=args.log_format, **options).run()


def _read_json_input(option: str, text: str, stdin_used: list) -> str:
    """The JSON text of --args/--kwargs: given inline, as @FILE, or - for stdin."""
    if text != "-" and not text.startswith("@"):
        return text
    if text == "-":
        if stdin_used:
            raise UsageError(f"{stdin_used[0]} already reads stdin; give {option} as JSON or @FILE")
        stdin_used.append(option)
        where = "stdin"
        try:
            data = sys.stdin.buffer.read(MAX_JSON_INPUT + 1)
        except (AttributeError, OSError, ValueError) as exc:  # closed (None), a directory, ...
            reason = getattr(exc, "strerror", None) or "it is closed"
            raise UsageError(f"{option} -: cannot read stdin: {reason}") from None
    else:
        where = text[1:]
        try:
            with open(where, "rb") as file:
                data = file.read(MAX_JSON_INPUT + 1)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UsageError(f"{option} {admin._shown(text)}: cannot read the file: {reason}") from None
    if len(data) > MAX_JSON_INPUT:
        raise PayloadError(f"{option}: {where} holds more than {MAX_JSON_INPUT >> 20} MiB; job "
                           f"arguments are at most 1 MiB of JSON: pass a reference (a path or a key)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{option}: {where} is not UTF-8 text (bad byte at offset {exc.start})") from None


class _Refused(ValueError):
    """A JSON value that parses but cannot be a job's argument."""


def _parse_json(option: str, text: str, kind: type):
    """JSON as a job will receive it: integers stay exact (beyond 64 bits they are
    refused, as enqueue() refuses them), NaN and Infinity are refused."""

    def integer(digits: str) -> int:
        value = int(digits) if len(digits) <= 21 else None
        if value is None or not -2**63 <= value < 2**64:
            raise _Refused(f"the integer {digits[:30]}{'...' if len(digits) > 30 else ''} does "
                           f"not fit in 64 bits; pass it as a string")
        return value

    def real(digits: str) -> float:
        value = float(digits)
        if not math.isfinite(value):
            raise _Refused(f"the number {digits[:30]} is infinity as a float; JSON arguments "
                           f"must be finite")
        return value

    def constant(name: str):
        raise _Refused(f"{name} is not JSON; use null or a finite number")

    if not text.strip():
        example = "[]" if kind is list else "{}"
        raise PayloadError(f"{option} is empty: give JSON such as {example}")
    try:
        value = json.loads(text, parse_int=integer, parse_float=real, parse_constant=constant)
    except RecursionError:
        raise PayloadError(f"{option}: the JSON is nested too deeply") from None
    except _Refused as exc:
        raise PayloadError(f"{option}: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError too
        raise PayloadError(f"{option} must be JSON: {exc}") from None
    if not isinstance(value, kind):
        what = "a JSON list, e.g. '[1, \"a\"]'" if kind is list else "a JSON object, e.g. '{\"a\": 1}'"
        shown = {list: "a list", dict: "an object", str: "a string", bool: "true or false",
                 type(None): "null"}.get(type(value), "a number")
        raise PayloadError(f"{option} must be {what}, got {shown}")
    return value


def cmd_enqueue(args) -> int:
    from runtime.client import connect

    stdin_used: list[str] = []
    positional = _parse_json("--args", _read_json_input("--args", args.args, stdin_used), list)
    keywords = _parse_json("--kwargs", _read_json_input("--kwargs", args.kwargs, stdin_used), dict)
    options = {"_delay": args.delay}
    if args.queue is not None:
        options["_queue"] = args.queue
    if args.priority is not None:
        options["_priority"] = args.priority
    if args.tags:
        options["_tags"] = args.tags
    # What job modules print when imported (or a module a job name makes us import)
    # goes to stderr: stdout holds the id, or the one JSON document, and nothing else.
    with contextlib.redirect_stdout(sys.stderr), connect(config=args.config) as queue:
        started = time.time()
        job_id = queue.enqueue_many([(args.name, positional, keywords, options)])[0]
        # A unique job whose key a live job held: that job's id came back, made earlier.
        duplicate = queue.status(job_id).created_at < started
    if duplicate:
        print(f"jobrt: a duplicate: job {job_id} holds this job's unique key (pending or "
              f"running), so no new job was made", file=sys.stderr)
    if args.json:
        admin.emit({"id": job_id, "duplicate": duplicate})
    else:
        print(job_id)
    return EXIT_OK


def cmd_run(args) -> int:
    stdin_used: list[str] = []
    positional = _parse_json("--args", _read_json_input("--args", args.args, stdin_used), list)
    keywords = _parse_json("--kwargs", _read_json_input("--kwargs", args.kwargs, stdin_used), dict)
    return run_job.run(args, positional, keywords)


COMMANDS = {"init": cmd_init, "start": cmd_start, "enqueue": cmd_enqueue, "run": cmd_run, **admin.COMMANDS,
            **failed_jobs.COMMANDS, **batches.COMMANDS,
            **chains.COMMANDS, **schedules.COMMANDS, **dashboard.COMMANDS,
            **queue_controls.COMMANDS, **job_list.COMMANDS, **bench.COMMANDS}


if __name__ == "__main__":
    sys.exit(main())
