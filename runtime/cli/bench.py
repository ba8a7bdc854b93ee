"""`jobrt bench`: measure a running deployment with jobrt's own no-op job
(runtime.bench_jobs), then remove every job it made. The phases are in
runtime.cli.bench_phases; this module checks that the deployment can run them, and
prints the figures."""

from __future__ import annotations

import argparse
import signal
import time

from runtime.bench_jobs import NOOP
from runtime.cli.admin import (
    EXIT_FAILURE, EXIT_OK, CommandError, UsageError, _whole, config_arg, emit, json_arg, load,
    queue_name,
)

EXIT_INTERRUPTED = 130  # as a shell reports a command that SIGINT ended
DEFAULT_JOBS = 10_000
MAX_JOBS = 10_000_000
DEFAULT_PROBES = 100

DESCRIPTION = """\
Measure this deployment as it runs: enqueue (one by one, and in bulk with
enqueue_many), drain (how fast its workers empty a backlog) and pickup latency
(from an enqueue returning to the job starting on an idle pool), with jobrt's
own no-op job (jobrt.bench:noop, which every supervisor registers). The bench
then deletes exactly the jobs it made, also when interrupted (Ctrl-C)."""

EPILOG = """\
The supervisors of this config must be running (`jobrt start`): the bench starts
none of its own, and exits 1 when no live supervisor serves its queue (see
`jobrt status`). Its jobs go to --queue (default: the first queue of the config's
first pool); real jobs on that queue compete with them and slow the figures, so
run it on a quiet queue or at a quiet time. The one-by-one phase enqueues
min(--jobs, 500) jobs; each is a durable commit. Pickup latency compares the
client's clock with the worker's: run the bench on a host of the deployment.
Progress goes to stderr; --json prints one document on stdout.
exit status: 0 measured, 1 no live supervisor, a stall (no bench job ended for
60 s) or jobs left behind, 2 a bad command line or config, 130 interrupted."""


def _jobs(text: str) -> int:
    return _whole(text, 1, MAX_JOBS, "a number of jobs")


def _probes(text: str) -> int:
    return _whole(text, 1, 100_000, "a number of pickup probes")


def add_parser(commands) -> None:
    bench = commands.add_parser("bench", help="measure this running deployment: enqueue, drain, "
                                "pickup latency", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(bench)
    bench.add_argument("--jobs", type=_jobs, default=DEFAULT_JOBS, metavar="N",
                       help=f"jobs of the bulk enqueue and the drain (default {DEFAULT_JOBS})")
    bench.add_argument("--probes", type=_probes, default=DEFAULT_PROBES, metavar="N",
                       help=f"jobs of the pickup latency, one at a time (default {DEFAULT_PROBES})")
    bench.add_argument("--queue", type=queue_name, metavar="Q",
                       help="the queue of the bench's jobs (default: the first pool's first queue)")
    json_arg(bench)


def _serving(storage, queue: str, config_path: str) -> tuple[int, int]:
    """(supervisors, workers) of the live supervisors whose pools serve `queue` and run the
    bench's job; CommandError (exit 1) when there are none."""
    from runtime.cli.health import live_supervisors

    rows = live_supervisors(storage, time.time())
    if not rows:
        raise CommandError(f"no live supervisor for {config_path}: the bench measures running "
                           f"ones; start them with `jobrt start --config {config_path}` (see `jobrt status`)")
    serving = [(row, [name for name, pool in row.info.get("pools", {}).items()
                      if queue in pool.get("queues", ())]) for row in rows]
    serving = [(row, pools) for row, pools in serving if pools]
    if not serving:
        served = sorted({q for row in rows for pool in row.info.get("pools", {}).values()
                         for q in pool.get("queues", ())})
        raise CommandError(f"no live supervisor serves queue {queue!r} (live pools serve: "
                           f"{', '.join(served) or 'none'}); pass --queue naming one of those")
    running = [(row, pools) for row, pools in serving if NOOP in row.info.get("jobs", ())]
    if not running:
        raise CommandError(f"the live supervisors serving queue {queue!r} do not register {NOOP}: "
                           f"they run an older jobrt; restart them with this one")
    workers = sum(1 for row, pools in running for worker in row.info.get("workers", ())
                  if worker.get("pool") in pools)
    return len(running), workers


def _competition(storage, queue: str) -> str | None:
    counts = storage.counts(time.time()).get(queue, {})
    busy = counts.get("pending", 0) + counts.get("running", 0)
    if busy:
        return (f"queue {queue} holds {busy} pending or running jobs of its own: they compete "
                f"with the bench's, whose figures are then low")
    return None


def cmd_bench(args) -> int:
    from runtime.cli.bench_phases import (
        CLEANUP_WAIT_S, ONE_BY_ONE_MAX, STALL_S, Bench, Interrupted, Progress, Stalled,
    )
    from runtime.client import Queue
    from runtime.registry import collect
    from runtime.storage import open_storage

    cfg = load(args)
    queue = args.queue or next(iter(cfg.pools.values())).queues[0]
    if not any(queue in pool.queues for pool in cfg.pools.values()):
        raise UsageError(f"bench: queue {queue!r} is served by no pool of {cfg.path}; pass --queue "
                         f"naming one a pool serves")
    storage = open_storage(cfg.storage_url, role="client", base_dir=cfg.base_dir, create=False)
    # Only jobrt's own job is ever enqueued: the user's job modules are not imported.
    client = Queue(storage, config_path=cfg.path, registry=collect([]),
                   pools={name: pool.queues for name, pool in cfg.pools.items()},
                   limiters=cfg.rate_limits)
    progress = Progress()
    bench = Bench(client, queue, progress)
    figures: dict = {}
    interrupted = stalled = False
    with client:
        supervisors, workers = _serving(storage, queue, cfg.path)
        progress.phase(f"{storage.url_for_humans}, queue {queue}: {supervisors} supervisor(s), "
                       f"{workers} worker(s)")
        competing = _competition(storage, queue)
        if competing:
            bench.warn(competing)
        handlers = bench.catch_signals()
        try:
            figures.update(bench.pickup(args.probes))
            figures.update(bench.one_by_one(min(args.jobs, ONE_BY_ONE_MAX)))
            figures.update(bench.bulk_and_drain(args.jobs))
        except Interrupted:
            interrupted = True
        except Stalled:
            stalled = True
        finally:
            for signum in handlers:  # cleanup is not to be interrupted: it is what Ctrl-C asked for
                signal.signal(signum, signal.SIG_IGN)
            progress.phase(f"removing the {len(bench.made)} jobs it made")
            left = bench.cleanup()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
    if left:
        raise CommandError(f"bench: {left} of its jobs still ran after {CLEANUP_WAIT_S:g} s and were left in "
                           f"queue {queue} (ids {bench.made[0]} to {bench.made[-1]}, "
                           f"name {NOOP}); they end by themselves", EXIT_FAILURE)
    if interrupted:
        raise CommandError("bench: interrupted; every job it made was removed", EXIT_INTERRUPTED)
    if stalled:
        raise CommandError(f"bench: no bench job ended for {STALL_S:g} s: are the workers serving queue "
                           f"{queue} busy with other jobs? (its jobs were removed)")
    document = {"storage": storage.url_for_humans, "queue": queue, "supervisors": supervisors,
                "workers": workers, **figures, "warnings": bench.warnings}
    if args.json:
        emit(document)
    else:
        _print(document)
    return EXIT_OK


def _print(d: dict) -> None:
    print(f"jobrt bench: {d['storage']}, queue {d['queue']}, {d['supervisors']} supervisor(s), "
          f"{d['workers']} worker(s)")
    print(f"  pickup latency   p50 {d['pickup_p50_ms']:9.2f} ms  p99 {d['pickup_p99_ms']:.2f} ms"
          f"   ({d['probes']} jobs, one at a time, idle pool)")
    print(f"  enqueue one      {d['enqueue_one_jobs_per_s']:12} jobs/s   ({d['enqueue_one_jobs']} "
          f"jobs, one enqueue each)")
    print(f"  enqueue bulk     {d['enqueue_bulk_jobs_per_s']:12} jobs/s   ({d['jobs']} jobs, "
          f"enqueue_many of 1000)")
    print(f"  drain            {d['drain_jobs_per_s']:12} jobs/s   ({d['jobs']} jobs in "
          f"{d['drain_seconds']:.2f} s)")


COMMANDS = {"bench": cmd_bench}
