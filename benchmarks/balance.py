"""Balancing benchmark: drain time of a skewed mix with balance = "auto" against "off".

    python3 benchmarks/balance.py                  # 4000 jobs of 3 ms, 90% on one queue of three
    options: --jobs 4000 --job-ms 3 --max-workers 10 --cooldown 0.5 --shift 2 --json-out FILE

Each run is `jobrt start` on SQLite, as a user runs it. The mix is enqueued in one
transaction, due a moment later so the supervisor is up: 90% of the jobs on "exports",
5% each on "emails" and "reports", every job a sleep of --job-ms (work that waits, as
mail or HTTP does, so workers add throughput even on a small machine). Drain time runs
from the moment the jobs are due to the last one's finish.

The pools all have queues emails, exports, reports and the same max_workers:
  off idle  balance = "off", workers = min_workers x queues (3): the size an auto
            pool shrinks to when idle, and what a fixed pool costs at rest
  auto      balance = "auto", min_workers 1, grows toward max_workers by the load
  simple    balance = "simple", max_workers split evenly between the queues, fixed
            (Horizon's "simple": the queue with 90% of the work gets a third)
  off max   balance = "off", workers = max_workers: a fixed pool that is always as
            large as auto ever gets (the ceiling; it costs that much at rest too)
The headline ratio is off idle / auto: what auto gains at the same resting
footprint and the same max_workers.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from drain import START_ALLOWANCE, Supervisor, report  # noqa: E402
from runtime import connect  # noqa: E402

QUEUES = ["emails", "exports", "reports"]
MIN_WORKERS = 1


def write_config(directory: Path, pool: dict) -> Path:
    path = directory / "supervisor.toml"
    path.write_text(tomli_w.dumps({
        "storage": {"url": "sqlite:///bench.db", "lease": 30},
        "jobs": {"modules": ["jobs.examples"], "path": [str(REPO)]},
        "pools": {"default": {"queues": QUEUES, "timeout": 60, "run_as_root": True, **pool}},
    }))
    return path


def mix(jobs: int, seconds: float) -> list:
    """90% on exports, the rest split between emails and reports, interleaved."""
    out = []
    for n in range(jobs):
        queue = "exports" if n % 10 else QUEUES[(n // 10) % 2 * 2]
        out.append(("jobs.examples:sleep", (seconds,), {}, {"_queue": queue, "_delay": START_ALLOWANCE}))
    return out


def drain(name: str, pool: dict, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="jobrt-bench-") as tmp:
        directory = Path(tmp)
        config = write_config(directory, pool)
        with connect(config=str(config)) as q:
            started = time.perf_counter()
            q.enqueue_many(mix(args.jobs, args.job_ms / 1000))
            due = time.time() - (time.perf_counter() - started) + START_ALLOWANCE
            supervisor = Supervisor(config, 0)
            try:
                if time.time() > due:
                    print(f"warning: the supervisor took longer than {START_ALLOWANCE} s to start",
                          file=sys.stderr)
                while sum(c.get("succeeded", 0) for c in q.counts().values()) < args.jobs:
                    time.sleep(0.05)
            finally:
                supervisor.stop()
            with sqlite3.connect(directory / "bench.db") as conn:
                last = conn.execute("SELECT max(finished_at) FROM jobs").fetchone()[0]
    seconds = last - due
    return {"run": name, "balance": pool["balance"], "workers": pool.get("workers", "-"),
            "max_workers": pool["max_workers"], "drain_seconds": round(seconds, 3),
            "jobs_per_s": round(args.jobs / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--job-ms", type=float, default=3.0, help="each job sleeps this long (ms)")
    parser.add_argument("--max-workers", type=int, default=10)
    parser.add_argument("--cooldown", type=float, default=0.5, help="balance_cooldown (s) under auto")
    parser.add_argument("--shift", type=int, default=2, help="balance_max_shift under auto")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    common = {"max_workers": args.max_workers, "min_workers": MIN_WORKERS}
    idle_size = MIN_WORKERS * len(QUEUES)
    runs = [
        ("off idle", {"balance": "off", "workers": idle_size, **common}),
        ("auto", {"balance": "auto", "balance_cooldown": args.cooldown,
                  "balance_max_shift": args.shift, **common}),
        ("simple", {"balance": "simple", **common}),
        ("off max", {"balance": "off", "workers": args.max_workers, **common}),
    ]
    results = [drain(name, pool, args) for name, pool in runs]
    by_name = {result["run"]: result["drain_seconds"] for result in results}
    for result in results:
        result["auto_speedup"] = round(result["drain_seconds"] / by_name["auto"], 2)
    report(f"jobrt balance benchmark: {args.jobs} jobs of {args.job_ms:g} ms, 90% on exports, "
           f"max_workers {args.max_workers} (auto: cooldown {args.cooldown:g} s, shift {args.shift}); "
           f"auto_speedup = this run's drain time / auto's", results, args.json_out, 16)
    print(f"auto drains {by_name['off idle'] / by_name['auto']:.2f}x faster than off at the "
          f"same resting size ({idle_size} workers) and max_workers; "
          f"{by_name['simple'] / by_name['auto']:.2f}x against simple at max_workers; "
          f"{by_name['off max'] / by_name['auto']:.2f}x against off always at max_workers")


if __name__ == "__main__":
    main()
