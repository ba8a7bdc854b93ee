"""Batches at scale: a 100,000-job batch against the same jobs enqueued without one.

    .venv/bin/python benchmarks/batches.py                 # SQLite
    .venv/bin/python benchmarks/batches.py --postgres      # and PostgreSQL
    options: --jobs 100000 --small 10000 --workers 2 --json-out FILE

Per backend, each phase on a fresh database, with `jobrt start` as a user runs it:
  plain   enqueue_many of N no-op jobs, then the drain of them by one supervisor
  batch   q.batch of the same N jobs with then and finally callbacks, then its drain
          (until the callbacks ran too)
  status  q.batch_status of a batch of --small members and of one of N members, each
          timed over many calls (median): the record is read from the batch's row, so its
          cost should not grow with the members
The ratios compare figures of the same run: batch / plain creation time, batch / plain
drain throughput (target >= 0.8), status at N / status at --small (target ~1).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from drain import START_ALLOWANCE, Supervisor, report, write_config  # noqa: E402
from runtime import connect  # noqa: E402

CALLBACK = "jobs.batch_examples:member"  # takes the record as its value: a no-op callback


def config_for(directory: Path, workers: int, url: str) -> Path:
    path = write_config(directory, workers, url)
    path.write_text(path.read_text().replace('"jobs.examples"', '"jobs.examples", "jobs.batch_examples"'))
    return path


def items(jobs: int) -> list:
    return [("jobs.examples:noop", (), {}, {"_delay": START_ALLOWANCE})] * jobs


def finishes(url: str, directory: Path) -> tuple[float, float]:
    """When the last no-op job (the work) ended, and when the last job of any kind (the
    batch's callbacks too) did."""
    query = ("SELECT max(CASE WHEN name = 'jobs.examples:noop' THEN finished_at END), "
             "max(finished_at) FROM jobs")
    if url.startswith("sqlite"):
        with sqlite3.connect(directory / "bench.db") as conn:
            return conn.execute(query).fetchone()
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(query.replace("FROM jobs", "FROM jobrt_jobs")).fetchone()


def drained(q, url: str, directory: Path, config: Path, store, jobs: int, callbacks: int) -> dict:
    """Enqueue `jobs` with `store` (timed), start one supervisor, wait for them and for
    `callbacks` more jobs to succeed."""
    expected = jobs + callbacks
    started = time.perf_counter()
    store(q)
    created = time.perf_counter() - started
    due = time.time() - created + START_ALLOWANCE
    supervisor = Supervisor(config, 0)
    try:
        while q.counts().get("default", {}).get("succeeded", 0) < expected:
            time.sleep(0.05)
        work_done, all_done = finishes(url, directory)
    finally:
        supervisor.stop()
    seconds = work_done - due
    return {"create_s": round(created, 3), "drain_s": round(seconds, 3),
            "drain_jobs_per_s": round(jobs / seconds),
            "callbacks_after_ms": round((all_done - work_done) * 1000, 1)}


def status_cost(q, batch_id: int, calls: int = 300) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        q.batch_status(batch_id)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def phase(url_for, args, run) -> dict:
    with tempfile.TemporaryDirectory(prefix="jobrt-bench-") as tmp:
        url = url_for()
        config = config_for(Path(tmp), args.workers, url)
        with connect(config=str(config)) as q:
            return run(q, url, Path(tmp), config)


def measure(backend: str, url_for, args) -> dict:
    n = args.jobs
    plain = phase(url_for, args, lambda q, url, d, c: drained(
        q, url, d, c, lambda q: q.enqueue_many(items(n)), n, 0))
    batch = phase(url_for, args, lambda q, url, d, c: drained(
        q, url, d, c, lambda q: q.batch(items(n), then=CALLBACK, finally_=CALLBACK), n, 2))

    def statuses(q, url, d, c):
        small = q.batch(items(args.small)).id
        large = q.batch(items(n)).id
        return {"status_small_us": round(status_cost(q, small), 1),
                "status_large_us": round(status_cost(q, large), 1)}

    status = phase(url_for, args, statuses)
    return {
        "backend": backend, "jobs": n, "workers": args.workers,
        "enqueue_many_s": plain["create_s"], "batch_create_s": batch["create_s"],
        "create_ratio": round(batch["create_s"] / plain["create_s"], 2),
        "plain_drain_jobs_per_s": plain["drain_jobs_per_s"],
        "batch_drain_jobs_per_s": batch["drain_jobs_per_s"],
        "drain_ratio": round(batch["drain_jobs_per_s"] / plain["drain_jobs_per_s"], 2),
        "callbacks_after_ms": batch["callbacks_after_ms"],
        f"status_{args.small}_us": status["status_small_us"],
        f"status_{n}_us": status["status_large_us"],
        "status_ratio": round(status["status_large_us"] / status["status_small_us"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    results = [measure("sqlite", lambda: "sqlite:///bench.db", args)]
    if args.postgres:
        from tests.pgcluster import Cluster

        cluster = Cluster(durable=True)
        try:
            results.append(measure("postgres", cluster.create_database, args))
        finally:
            cluster.destroy()
    report(f"jobrt batch benchmark: {args.jobs} no-op jobs, one supervisor, {args.workers} workers",
           results, args.json_out, 24)


if __name__ == "__main__":
    main()
