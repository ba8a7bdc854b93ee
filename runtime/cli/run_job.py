"""`jobrt run NAME [--args JSON] [--kwargs JSON]`: run one job in the foreground, in this
process, so `breakpoint()` and a debugger work; nothing is stored, no storage is opened.

    --config's [jobs] modules --import--> the job --call(args, kwargs)--> result JSON on stdout, exit 0
                                                                      --> traceback on stderr, exit 1

Inside the job, attempt() is 1 and job_id() is 0 (no stored job has id 0); current_batch(),
previous_result() and scheduled_at() are None. release() and fail() print what a worker
would have done, exit 1. What is not a worker's: no timeout or memory limit is enforced, no
failure hook or event hook runs, the job runs as the user who typed the command, and a job that calls os._exit() ends
`jobrt run` with that status. What the
modules and the job print goes to stderr: stdout holds the result alone.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import sys

from runtime import job_context
from runtime.cli.admin import EXIT_FAILURE, EXIT_OK, job_call_args, load
from runtime.errors import PayloadError, UnknownJob
from runtime.payload import dump_payload, dump_result

RUN_JOB_ID = 0  # job_id() inside `jobrt run`: no stored job has it


def add_parser(commands, args_help: str) -> None:
    run = commands.add_parser(
        "run", help="run one job in the foreground, in this process; nothing is stored",
        description="Run one job in this process (breakpoint() works), print its result as JSON "
                    "(exit 0) or its traceback (exit 1). Nothing is stored. attempt() is 1, "
                    "job_id() is 0; release() and fail() print what they would do.",
        epilog=args_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    job_call_args(run)


def _hint(name: str, names: list[str]) -> str:
    """What to try instead: the job names closest to `name` (the same function in another
    module, a near spelling of the function in the same module), else the known names."""
    module, _, function = name.rpartition(":")
    close = [known for known in names if known.rpartition(":")[2] == function]
    siblings = {known.rpartition(":")[2]: known for known in names if known.rpartition(":")[0] == module}
    # within one module: `jobs.examples:` would make every name of it look close
    close += [siblings[f] for f in difflib.get_close_matches(function, list(siblings), n=2)]
    if not close:  # neither: the nearest whole names
        close += difflib.get_close_matches(name, names, n=2)
    close = list(dict.fromkeys(known for known in close if known != name))[:3]
    if close:
        return f"did you mean {' or '.join(close)}?"
    more = ", ..." if len(names) > 10 else ""
    return f"known: {', '.join(names[:10]) or 'none'}{more}"


def run(args, positional: list, keywords: dict) -> int:
    from runtime.registry import collect

    cfg = load(args)
    # What job modules print when imported goes to stderr: stdout holds the result alone.
    with contextlib.redirect_stdout(sys.stderr):
        registry = collect(cfg.modules, cfg.module_path, cfg.path)
    spec = registry.get(args.name)
    if spec is None:
        raise UnknownJob(f"unknown job {args.name!r}: not in the [jobs] modules of {cfg.path} "
                         f"({', '.join(cfg.modules) or 'none'}); {_hint(args.name, sorted(registry))}")
    dump_payload(spec.name, positional, keywords)  # the arguments enqueue would accept, or exit 2
    return _call(spec, positional, keywords)


def _call(spec, positional: list, keywords: dict) -> int:
    from runtime.workers.child import describe, format_traceback

    token = job_context.enter(RUN_JOB_ID, 1, None)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            value = spec.func(*positional, **keywords)
    except KeyboardInterrupt:  # Ctrl-C at a breakpoint or a long run: the user's, exit 130
        raise
    except job_context.Release as exc:
        if not job_context.valid_delay(exc.delay):  # raised by hand, around release()'s check
            return _failed(spec.name, job_context.bad_delay(exc.delay), format_traceback(exc))
        print(f"jobrt run: job {spec.name} called release({exc.delay:g}): a worker would put it "
              f"back in its queue, due in {exc.delay:g} s (the run counts as an attempt); "
              f"nothing was stored", file=sys.stderr)
        return EXIT_FAILURE
    except job_context.Fail as exc:
        print(f"jobrt run: job {spec.name} called fail({exc.reason!r}): a worker would mark it "
              f"failed now, with no further tries; nothing was stored", file=sys.stderr)
        return EXIT_FAILURE
    except BaseException as exc:  # noqa: BLE001 - SystemExit is a job error too, as in a worker
        return _failed(spec.name, describe(exc), format_traceback(exc))
    finally:
        job_context.leave(token)
    try:
        result = dump_result(value)
    except PayloadError as exc:  # not JSON, or too big: a worker fails the job so
        return _failed(spec.name, str(exc), None)
    print(result.decode())
    return EXIT_OK


def _failed(name: str, error: str, traceback: str | None) -> int:
    if traceback:
        sys.stderr.write(traceback if traceback.endswith("\n") else traceback + "\n")
    print(f"jobrt run: job {name} failed: {error}; nothing was stored", file=sys.stderr)
    return EXIT_FAILURE
