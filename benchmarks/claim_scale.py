"""Claim cost against the size of the table: from 10k to 1M pending jobs, and with 1M
ended jobs kept for retention, on SQLite (and PostgreSQL with --postgres).

    python3 benchmarks/claim_scale.py                          # SQLite: 10k, 100k, 1M pending
    python3 benchmarks/claim_scale.py --postgres --pg-max 200000   # PostgreSQL: fsync off
    options: --max 1000000 --batch 50 --rounds 60 --json-out FILE

Straight through the storage API, as a supervisor uses it: `exchange` settles the batch
claimed before (succeeded) and claims the next `--batch` jobs, in one transaction. At
each size the table is topped up to exactly that many pending jobs, a few exchanges warm
up, then `--rounds` exchanges are timed one by one; the figure is the median time per
claimed job. Then every pending job is claimed and settled (the table keeps them, ended,
as retention does), --min pending jobs are added, and the same is timed again (on
PostgreSQL once more after a VACUUM: the claims just made left dead entries in the claim
index, which autovacuum removes in its own time). The ratios are against the smallest size: flat is <= 1.1. Last, the claim statement's plan
at the largest size (EXPLAIN QUERY PLAN / EXPLAIN), to show it walks the claim index.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime.storage import NewJob, Outcome, open_storage  # noqa: E402

QUEUE = "default"
CHUNK = 10_000  # jobs per enqueue transaction while filling
FILL_BATCH = 1000  # jobs per exchange while turning pending jobs into ended ones
WARMUP = 20  # exchanges before the timed ones: caches and the planner settle
PAYLOAD = orjson.dumps([[1, "two"], {"three": 3}])


def sizes_up_to(low: int, high: int) -> list[int]:
    sizes, size = [], low
    while size < high:
        sizes.append(size)
        size *= 10
    return sizes + [high]


class Table:
    """One database and what it holds: the pending jobs, and the claims still to settle."""

    def __init__(self, store):
        self.store = store
        self.pending = 0
        self.held: list[Outcome] = []  # the last claims, settled by the next exchange

    def fill(self, pending: int) -> None:
        """Enqueue until exactly `pending` jobs are pending."""
        while self.pending < pending:
            n = min(CHUNK, pending - self.pending)
            self.store.enqueue([NewJob(QUEUE, "jobs.examples:noop", PAYLOAD, 0.0)] * n)
            self.pending += n

    def exchange(self, limit: int) -> int:
        now = time.time()
        claimed = self.store.exchange("bench", self.held, [QUEUE], limit, now + 60, now)
        self.held = [Outcome(c.id, c.attempt, "succeeded", now, result=b"null", queue=c.queue,
                             name=c.name) for c in claimed]
        self.pending -= len(claimed)
        return len(claimed)

    def per_claim_us(self, batch: int, rounds: int) -> float:
        """Median microseconds per claimed job over `rounds` timed exchanges of `batch`."""
        for _ in range(WARMUP):
            self.exchange(batch)
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            claimed = self.exchange(batch)
            times.append((time.perf_counter() - started) / max(claimed, 1) * 1e6)
        return statistics.median(times)

    def end_all(self) -> int:
        """Claim and settle every pending job: they stay in the table, ended."""
        ended = 0
        while self.exchange(FILL_BATCH):
            ended += len(self.held)
        self.exchange(0)  # settles the last claims
        return ended


def plan(url: str, store) -> list[str]:
    """The claim statement's plan, as the backend would run it now."""
    now = time.time()
    if url.startswith("sqlite"):
        from runtime.storage.sqlite_file import SQL

        rows = store.conn.execute("EXPLAIN QUERY PLAN " + SQL["claim"],
                                  ("bench", now + 60, now, QUEUE, now, 50)).fetchall()
        return [row[-1] for row in rows]
    import psycopg

    from runtime.storage.postgres import SQL

    with psycopg.connect(url) as conn:
        rows = conn.execute("EXPLAIN (COSTS OFF) " + SQL["claim"], {
            "owner": "bench", "queues": [QUEUE], "limit": 50, "lease_expires": now + 60,
            "now": now, "channel": ""}).fetchall()
        conn.rollback()
    return [row[0] for row in rows]


def vacuum(url: str) -> None:
    """VACUUM the jobs table, as autovacuum would in its time."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) jobrt_jobs")


def run(backend: str, url: str, base_dir: str, sizes: list[int], args) -> dict:
    store = open_storage(url, role="supervisor", base_dir=base_dir)
    table = Table(store)
    result: dict = {"backend": backend, "batch": args.batch, "rounds": args.rounds}
    try:
        for size in sizes:
            started = time.perf_counter()
            table.fill(size)
            filled = time.perf_counter() - started
            result[f"claim_us_{size}_pending"] = round(table.per_claim_us(args.batch, args.rounds), 1)
            print(f"{backend}: {size} pending: {result[f'claim_us_{size}_pending']} us per claim "
                  f"(filled in {filled:.1f} s)", file=sys.stderr)
        table.fill(sizes[-1])
        result["plan"] = plan(url, store)
        started = time.perf_counter()
        ended = table.end_all()
        print(f"{backend}: {ended} jobs claimed and settled in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        table.fill(sizes[0])
        key = f"claim_us_{sizes[0]}_pending_{ended}_ended"
        result[key] = round(table.per_claim_us(args.batch, args.rounds), 1)
        print(f"{backend}: {sizes[0]} pending, {ended} ended: {result[key]} us per claim", file=sys.stderr)
        base = result[f"claim_us_{sizes[0]}_pending"]
        result[f"ratio_{sizes[-1]}_to_{sizes[0]}_pending"] = round(
            result[f"claim_us_{sizes[-1]}_pending"] / base, 3)
        result[f"ratio_with_{ended}_ended"] = round(result[key] / base, 3)
        if backend == "postgres":  # the claims walked dead index entries: what a vacuum gives back
            vacuum(url)
            result["plan_vacuumed"] = plan(url, store)
            result[key + "_vacuumed"] = round(table.per_claim_us(args.batch, args.rounds), 1)
            result[f"ratio_with_{ended}_ended_vacuumed"] = round(result[key + "_vacuumed"] / base, 3)
            print(f"{backend}: after VACUUM: {result[key + '_vacuumed']} us per claim", file=sys.stderr)
    finally:
        store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=int, default=10_000, help="the smallest size (pending jobs)")
    parser.add_argument("--max", type=int, default=1_000_000, help="the largest size (pending jobs)")
    parser.add_argument("--pg-max", type=int, help="the largest size on PostgreSQL (default --max)")
    parser.add_argument("--batch", type=int, default=50, help="jobs per exchange, as a supervisor claims")
    parser.add_argument("--rounds", type=int, default=60, help="timed exchanges per size")
    parser.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL cluster")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    results = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="jobrt-claim-") as tmp:
            results.append(run("sqlite", "sqlite:///claim.db", tmp, sizes_up_to(args.min, args.max), args))
    if args.postgres:
        from tests.pgcluster import Cluster

        # fsync off: with it, each exchange's commit waits for the disk, whose noise (on a
        # shared machine) hides the cost of the claim itself, the figure this measures.
        cluster = Cluster()
        try:
            results.append(run("postgres", cluster.create_database(), "",
                               sizes_up_to(args.min, args.pg_max or args.max), args))
        finally:
            cluster.destroy()
    for result in results:
        print(f"{result['backend']}: the claim's plan at the largest size:")
        for line in result["plan"]:
            print(f"    {line}")
        if "plan_vacuumed" in result:
            print(f"{result['backend']}: and with the smallest size pending, the ended jobs kept, "
                  f"after VACUUM ANALYZE:")
            for line in result["plan_vacuumed"]:
                print(f"    {line}")
    document = orjson.dumps(results).decode()
    print(document)
    if args.json_out:
        Path(args.json_out).write_text(document + "\n")


if __name__ == "__main__":
    main()
