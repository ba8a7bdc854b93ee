"""The eager queue (runtime.testing) at the sizes a test suite may reach: 10,000 no-op jobs
and a batch of 1,000 members, each enqueued and run inline on the fake clock.

    .venv/bin/python benchmarks/eager.py        options: --jobs 10000 --members 1000

Phases, each on a new eager queue:
  jobs    enqueue_many of N no-op jobs, then run_until_empty()
  batch   q.batch of M no-op members with then and finally callbacks, then run_until_empty()
Target: well under a second each (a test that runs them should not notice). Prints a
table, then one JSON line; the ratio compares the two phases' per-job costs in this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime.testing import eager_queue  # noqa: E402

NOOP = "jobs.examples:noop"
CALLBACK = "jobs.batch_examples:member"  # takes the record as its value: a no-op callback


def jobs_phase(count: int) -> dict:
    with eager_queue() as q:
        started = time.perf_counter()
        q.enqueue_many([(NOOP, ())] * count)
        enqueued = time.perf_counter()
        ran = q.run_until_empty()
        ended = time.perf_counter()
    assert ran == count, (ran, count)
    return {"enqueue_s": enqueued - started, "run_s": ended - enqueued, "total_s": ended - started}


def batch_phase(members: int) -> dict:
    with eager_queue() as q:
        started = time.perf_counter()
        batch = q.batch([(NOOP, ())] * members, name="bench", then=CALLBACK, finally_=CALLBACK)
        enqueued = time.perf_counter()
        ran = q.run_until_empty()
        ended = time.perf_counter()
        assert q.batch_status(batch.id).succeeded == members
    assert ran == members + 2, (ran, members)  # and its two callbacks
    return {"enqueue_s": enqueued - started, "run_s": ended - enqueued, "total_s": ended - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=1_000)
    args = parser.parse_args()
    jobs, batch = jobs_phase(args.jobs), batch_phase(args.members)
    print(f"{'phase':<28}{'enqueue s':>11}{'run s':>9}{'total s':>9}{'us/job':>9}")
    for label, figures, n in ((f"{args.jobs} no-op jobs", jobs, args.jobs),
                              (f"batch of {args.members}", batch, args.members)):
        print(f"{label:<28}{figures['enqueue_s']:>11.3f}{figures['run_s']:>9.3f}"
              f"{figures['total_s']:>9.3f}{figures['total_s'] / n * 1e6:>9.1f}")
    ratio = (batch["total_s"] / args.members) / (jobs["total_s"] / args.jobs)
    print(f"per-job cost, batch member / plain job: {ratio:.2f}")
    print(json.dumps({"jobs": args.jobs, "members": args.members, "plain": jobs, "batch": batch,
                      "batch_per_job_ratio": ratio}))


if __name__ == "__main__":
    main()
