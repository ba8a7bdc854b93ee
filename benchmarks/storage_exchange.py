"""Storage hot path: claim + settle throughput of `exchange`, without workers.

    python3 benchmarks/storage_exchange.py [--jobs 50000] [--batch 50] [--url sqlite:///bench.db]

Enqueues --jobs jobs in one bulk enqueue, then loops exchange(limit=--batch)
settling the previous batch as succeeded, as a supervisor does, until the
queue is empty. SQLite runs in a temp dir with role "supervisor"
(synchronous=NORMAL). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.storage import NewJob, Outcome, open_storage  # noqa: E402


def run(url: str, jobs: int, batch: int, base_dir: str) -> dict:
    store = open_storage(url, role="supervisor", base_dir=base_dir)
    payload = orjson.dumps([[1, "two"], {"three": 3}])
    start = time.perf_counter()
    store.enqueue([NewJob("default", "jobs.examples:noop", payload, 0.0) for _ in range(jobs)])
    enqueued = time.perf_counter()
    done, outcomes, exchanges = 0, [], 0
    while True:
        now = time.time()
        claimed = store.exchange("bench", outcomes, ["high", "default"], batch, now + 30, now)
        exchanges += 1
        done += len(outcomes)
        if not claimed:
            break
        outcomes = [Outcome(c.id, c.attempt, "succeeded", now, result=b"null", queue=c.queue, name=c.name)
                    for c in claimed]
    drained = time.perf_counter()
    assert done == jobs, (done, jobs)
    store.close()
    return {
        "url": url, "jobs": jobs, "batch": batch, "exchanges": exchanges,
        "enqueue_jobs_per_s": round(jobs / (enqueued - start)),
        "claim_settle_jobs_per_s": round(jobs / (drained - enqueued)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--url", default="sqlite:///bench.db")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as base_dir:
        print(orjson.dumps(run(args.url, args.jobs, args.batch, base_dir)).decode())


if __name__ == "__main__":
    main()
