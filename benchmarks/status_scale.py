"""Status at scale: what counts(), the health checks and `jobrt status` cost at 1k and 1M jobs.

    python3 benchmarks/status_scale.py                  # SQLite, 1k and 1M jobs
    python3 benchmarks/status_scale.py --postgres       # and a throwaway PostgreSQL cluster
    options: --sizes 1000,1000000 --repeat 7 --cli-runs 5 --json-out FILE

Each database is built through the storage verbs (bulk enqueue, exchange, cancel),
as clients and supervisors write it, in mixed states over four queues and three job
names: 40% succeeded, 10% failed, 2% cancelled (ended), 1% running, 23% pending
and due (available_at up to an hour ago), 24% pending and delayed (due in 1 hour
to 7 days). One live supervisor's heartbeat is recorded (its workers run two of the
three names), so `jobrt health` and `jobrt status` also read the pending jobs per
queue and name, and report those of the third.

Timed (median of --repeat runs, milliseconds), once built and at rest:
  counts            storage.counts(now): what a supervisor with metrics on reads
                    every heartbeat, and `jobrt status` reads
  heartbeat         storage.heartbeat() then counts(): a supervisor's heartbeat with
                    metrics on (with nothing changed since the last one)
  oldest_pending    storage.oldest_pending(now) (health's longest wait)
  pending_by_name   storage.pending_by_queue_and_name() (health/status: jobs no one runs)
  health_reads      runtime.cli.health.gather(): every storage read of `jobrt health`
  cli_status        `jobrt status --json` end to end (a new Python process each run;
                    --cli-runs runs, the median)
  cli_health        `jobrt health --json` end to end
and the ratio of each figure at the largest size to the smallest; also build_s, the
slowest heartbeat while building (after a chunk of 20k jobs changed) and, on
PostgreSQL, the count changes left to fold once built and the heartbeats (seconds)
that folding them took. PostgreSQL runs with fsync off (reads are what is measured)
and is measured once heartbeats have folded the count changes and after VACUUM
ANALYZE, as autovacuum leaves a table at rest. Prints a table, then one JSON document.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime.cli import health  # noqa: E402
from runtime.storage import NewJob, Outcome, open_storage  # noqa: E402

QUEUES = ["high", "default", "low", "emails"]
NAMES = ["jobs.examples:noop", "jobs.examples:add", "jobs.examples:echo"]
SHARES = {"succeeded": 0.40, "failed": 0.10, "cancelled": 0.02, "running": 0.01,
          "due": 0.23, "delayed": 0.24}
CHUNK = 20_000  # jobs per enqueue and per exchange while building
OWNER = "bench-supervisor"


def new_jobs(rng: random.Random, count: int, at) -> list[NewJob]:
    payload = orjson.dumps([[1, "two"], {}])
    return [NewJob(rng.choice(QUEUES), rng.choice(NAMES), payload, at(), priority=rng.randint(0, 2))
            for _ in range(count)]


def build(store, size: int, now: float, seed: int = 1) -> dict:
    """Fill an empty store with `size` jobs in the SHARES mix; returns the counts per state.
    A supervisor heartbeats after each chunk, as a live one would meanwhile (every 2 s)."""
    rng = random.Random(seed)
    want = {state: int(size * share) for state, share in SHARES.items()}
    want["delayed"] = size - sum(v for k, v in want.items() if k != "delayed")
    lease = now + 86400.0
    past = lambda: now - rng.uniform(1.0, 3600.0)  # noqa: E731
    # Ended and running jobs: enqueued due, claimed, settled (or not, for running).
    for state in ("succeeded", "failed", "running"):
        left = want[state]
        while left:
            n = min(left, CHUNK)
            store.enqueue(new_jobs(rng, n, past))
            claimed = store.exchange(OWNER, [], QUEUES, n, lease, now)
            assert len(claimed) == n, (state, len(claimed), n)
            if state != "running":
                store.settle(OWNER, [Outcome(c.id, c.attempt, state, now - rng.uniform(0, 3600),
                                             result=b"null", error="boom" if state == "failed"
                                             else None) for c in claimed])
            heartbeat(store, time.time())
            left -= n
    left = want["cancelled"]
    while left:
        n = min(left, CHUNK)
        for job_id in store.enqueue(new_jobs(rng, n, lambda: now + 86400.0)):
            assert store.cancel(job_id, now)
        heartbeat(store, time.time())
        left -= n
    for state, at in (("due", past), ("delayed", lambda: now + rng.uniform(3600.0, 7 * 86400.0))):
        left = want[state]
        while left:
            n = min(left, CHUNK)
            store.enqueue(new_jobs(rng, n, at))
            heartbeat(store, time.time())
            left -= n
    return want


SLOWEST_HEARTBEAT = [0.0]  # seconds, while building: after a chunk of 20k changed jobs


def heartbeat(store, now: float) -> None:
    info = {"workers": [], "rate": 0.0, "done": 0, "restarts": {},
            "pools": {"default": {"queues": QUEUES, "workers": 2}}, "jobs": NAMES[:2]}
    started = time.perf_counter()
    store.heartbeat(OWNER, "bench-host", os.getpid(), now, info, now, now + 30, held=[])
    SLOWEST_HEARTBEAT[0] = max(SLOWEST_HEARTBEAT[0], time.perf_counter() - started)


def timed(call, repeat: int) -> float:
    """Median milliseconds of `repeat` calls (after one warm-up call)."""
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cli(config: Path, command: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "runtime.cli", command, "--json",
                                 "--config", str(config)], capture_output=True,
                                env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=600)
        times.append((time.perf_counter() - started) * 1000)
        assert result.returncode in (0, 1, 2) and result.stdout.startswith(b"{"), result
        orjson.loads(result.stdout)
    return statistics.median(times)


def measure(url: str, directory: Path, size: int, args, prepare=None) -> dict:
    now = time.time()
    store = open_storage(url, role="supervisor", base_dir=str(directory))
    try:
        started = time.perf_counter()
        SLOWEST_HEARTBEAT[0] = 0.0
        shape = build(store, size, now)
        build_s = time.perf_counter() - started
        build_heartbeat_ms = SLOWEST_HEARTBEAT[0] * 1000
        heartbeat(store, time.time())  # a live supervisor; it also tidies the counter rows
        catch_up = {}
        if prepare is not None:
            catch_up = prepare(url, store)

        def supervisor_heartbeat():  # what a supervisor with metrics on does every heartbeat
            heartbeat(store, time.time())
            store.counts(time.time())

        figures = {
            "counts": timed(lambda: store.counts(time.time()), args.repeat),
            "heartbeat": timed(supervisor_heartbeat, args.repeat),
            "oldest_pending": timed(lambda: store.oldest_pending(time.time()), args.repeat),
            "pending_by_name": timed(store.pending_by_queue_and_name, args.repeat),
            "health_reads": timed(lambda: health.gather(store, time.time()), args.repeat),
        }
        totals = {}
        for per_queue in store.counts(time.time()).values():
            for state, n in per_queue.items():
                totals[state] = totals.get(state, 0) + n
        expected = dict(shape, pending=shape["due"])
        for state in ("succeeded", "failed", "cancelled", "running", "pending", "delayed"):
            assert totals.get(state, 0) == expected[state], (state, totals, expected)
        heartbeat(store, time.time())  # still live (30 s) for the commands below
    finally:
        store.close()
    config = directory / "supervisor.toml"
    config.write_text(tomli_w.dumps({
        "storage": {"url": url}, "jobs": {"modules": ["jobs.examples"], "path": [str(REPO)]},
        "pools": {"default": {"queues": QUEUES, "workers": 1}}}))
    figures["cli_status"] = cli(config, "status", args.cli_runs)
    figures["cli_health"] = cli(config, "health", args.cli_runs)
    return {"jobs": size, "build_s": round(build_s, 1),
            "build_heartbeat_max_ms": round(build_heartbeat_ms, 1), **catch_up,
            **{key: round(value, 3) for key, value in figures.items()}}


def settle_postgres(url: str, store) -> dict:
    """Heartbeat until the count changes the build wrote are folded (a live supervisor
    does so over its next heartbeats, a time-boxed batch each), then VACUUM ANALYZE as
    autovacuum would. Returns how long the folding took."""
    import psycopg

    figures = {}
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'jobrt_count%'")]
        if "jobrt_count_changes" in tables:
            left = conn.execute("SELECT count(*) FROM jobrt_count_changes").fetchone()[0]
            figures["fold_backlog_rows"] = left
            beats, started = 0, time.perf_counter()
            while left:
                heartbeat(store, time.time())
                beats += 1
                left = conn.execute("SELECT count(*) FROM jobrt_count_changes").fetchone()[0]
            figures["fold_backlog_heartbeats"] = beats
            figures["fold_backlog_s"] = round(time.perf_counter() - started, 1)
        for table in ["jobrt_jobs"] + tables:
            conn.execute(f"VACUUM ANALYZE {table}")
    return figures


def run_backend(backend: str, sizes: list[int], args, cluster=None) -> list[dict]:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="jobrt-bench-") as tmp:
            if backend == "sqlite":
                row = measure("sqlite:///bench.db", Path(tmp), size, args)
            else:
                row = measure(cluster.create_database(), Path(tmp), size, args,
                              prepare=settle_postgres)
        rows.append({"backend": backend, **row})
        print(f"  {backend} {size} jobs built in {row['build_s']} s (slowest heartbeat meanwhile "
              f"{row['build_heartbeat_max_ms']} ms)", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,1000000",
                        type=lambda text: [int(part) for part in text.split(",")])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    results = [] if args.skip_sqlite else run_backend("sqlite", args.sizes, args)
    if args.postgres:
        from tests.pgcluster import Cluster

        cluster = Cluster()
        try:
            results += run_backend("postgres", args.sizes, args, cluster)
        finally:
            cluster.destroy()
    keys = ["counts", "heartbeat", "oldest_pending", "pending_by_name", "health_reads",
            "cli_status", "cli_health"]
    small, large = min(args.sizes), max(args.sizes)
    ratios = []
    print(f"jobrt status at scale: milliseconds (median), ratio {large}/{small} jobs")
    print(f"  {'':<16}" + "".join(f"{r['backend'][:6] + ' ' + str(r['jobs']):>16}"
                                  for r in results))
    for key in keys:
        print(f"  {key:<16}" + "".join(f"{r[key]:>16.3f}" for r in results))
    for backend in dict.fromkeys(r["backend"] for r in results):
        by_size = {r["jobs"]: r for r in results if r["backend"] == backend}
        if small != large:
            ratio = {key: round(by_size[large][key] / by_size[small][key], 2) for key in keys}
            ratios.append({"backend": backend, "ratio": f"{large}/{small}", **ratio})
            print(f"  ratio {backend:<10}" + "".join(f"  {key} {ratio[key]}" for key in keys))
    document = orjson.dumps({"results": results, "ratios": ratios}).decode()
    print(document)
    if args.json_out:
        Path(args.json_out).write_text(document + "\n")


if __name__ == "__main__":
    main()
