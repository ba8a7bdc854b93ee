"""The cost of the Laravel job model's options on storage's hot path, as ratios against
plain jobs measured in the same run (issue 12's targets: plain jobs unchanged, a
constrained job at most 2x the cost of a plain one).

    python3 benchmarks/job_model.py [--jobs 20000] [--rounds 3] [--postgres]

Each kind is enqueued in one client transaction (`Queue.enqueue_many`, as users call it)
and drained by `exchange` loops of 50 (claim + settle, as a supervisor does), on a fresh
database per round; rounds alternate kinds and the best of each is kept. Kinds: plain;
unique (a key per job, from the job's arguments); unique_until="start"; max_exceptions
(stored with the job, counted by settles); failing with a failure hook (each failure
makes the hook's job, drained too); gates: an overlap key or a rate key per job, and one
key for all (those run one at a time). Then the claim cost of plain jobs while 100,000
jobs wait behind a busy overlap key or a full rate limiter, against none waiting (target:
no slower). Prints a table, then one JSON document.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime import connect  # noqa: E402
from runtime.storage import Outcome  # noqa: E402

KINDS = {  # kind -> (job, enqueue options, how each run ends)
    "plain": ("jobs.examples:add", {}, "succeeded"),
    "unique": ("jobs.examples:add", {"_unique": True}, "succeeded"),
    "unique_until_start": ("jobs.examples:add", {"_unique": True, "_unique_until": "start"},
                           "succeeded"),
    "max_exceptions": ("jobs.examples:add", {"_max_exceptions": 3}, "succeeded"),
    "failure_hook": ("jobs.examples:fail_with_hook", {"_tries": 1}, "failed"),
    # Gates: a key per job (the gate's cost per job), and one key for all (runs one at a
    # time: one job per claim, so a transaction per run; measured on SERIAL_SHARE of the jobs).
    "overlap_keys": ("jobs.examples:add", {"_overlap_key": "{n}"}, "succeeded"),
    "rate_keys": ("jobs.examples:add", {"_rate_limit": "1000000/s", "_rate_key": "{n}"},
                  "succeeded"),
    "overlap_one_key": ("jobs.examples:add", {"_overlap_key": "one"}, "succeeded"),
    "rate_one_key": ("jobs.examples:add", {"_rate_limit": "1000000/s"}, "succeeded"),
}
SERIAL_SHARE = 20  # the one-key kinds drain jobs / 20
WAITING = 100_000  # jobs waiting at a gate in the claim-cost measurement


def one_round(url: str, kind: str, jobs: int) -> tuple[float, float]:
    """(enqueue seconds per job, drain seconds per run) of `jobs` jobs of `kind` on a fresh
    database (a failing job with a hook makes two runs: its own and its hook's)."""
    name, options, ending = KINDS[kind]
    if kind.endswith("one_key"):
        jobs //= SERIAL_SHARE
    with connect(url) as q:
        batch = [(name, ([str(n)] if "hook" in kind else [n, 1]), {},
                  {k: v.format(n=n) if isinstance(v, str) else v for k, v in options.items()})
                 for n in range(jobs)]
        started = time.perf_counter()
        q.enqueue_many(batch)
        enqueued = time.perf_counter()
        store, outcomes, now = q.storage, [], time.time()
        while True:
            claimed = store.exchange("bench", outcomes, ["default"], 50, now + 30, now)
            if not claimed and not outcomes:
                break
            outcomes = [Outcome(c.id, c.attempt, "failed" if c.name == name and ending == "failed"
                                else "succeeded", now, error="E", queue=c.queue, name=c.name,
                                overlap_key=c.overlap_key, rate_key=c.rate_key)
                        for c in claimed]
        drained = time.perf_counter()
        counts = store.counts(now + 60)["default"]
        runs = jobs * (2 if ending == "failed" else 1)
        assert counts["succeeded"] + counts["failed"] == runs, (kind, counts)
    return (enqueued - started) / jobs, (drained - enqueued) / runs


def waiting_round(url: str, gate: str | None, jobs: int) -> float:
    """Drain seconds per run of `jobs` plain jobs while WAITING jobs wait at a gate: behind
    an overlap key whose job runs ("overlap"), or a rate limiter that is full ("rate"),
    or none at all (None)."""
    with connect(url) as q:
        store = q.storage
        if gate is not None:
            options = {"_overlap_key": "busy"} if gate == "overlap" else {"_rate_limit": "1/h"}
            q.enqueue_many([("jobs.examples:add", [n, 1], {}, options) for n in range(WAITING)])
            now = time.time()
            (first,) = store.claim("holder", ["default"], 1, now + 3600, now)  # holds the gate
            assert first.overlap_key or first.rate_key
        q.enqueue_many([("jobs.examples:add", [n, 1]) for n in range(jobs)])
        now = time.time()
        started = time.perf_counter()
        outcomes, runs = [], 0
        while True:
            claimed = store.exchange("bench", outcomes, ["default"], 50, now + 30, now)
            if not claimed and not outcomes:
                break
            runs += len(claimed)
            outcomes = [Outcome(c.id, c.attempt, "succeeded", now, queue=c.queue, name=c.name)
                        for c in claimed]
        drained = time.perf_counter()
        assert runs == jobs, (gate, runs)
    return (drained - started) / jobs


def run_waiting(url_of, jobs: int, rounds: int) -> dict:
    best = {gate: float("inf") for gate in (None, "overlap", "rate")}
    for round_ in range(rounds):
        for gate in best:
            best[gate] = min(best[gate], waiting_round(url_of(f"waiting-{gate}-{round_}"), gate, jobs))
    return {f"claim_cost_behind_{gate}_x": round(best[gate] / best[None], 2)
            for gate in ("overlap", "rate")}


def run(url_of, kinds: list[str], jobs: int, rounds: int) -> dict:
    best: dict[str, list[float]] = {kind: [float("inf"), float("inf")] for kind in kinds}
    for round_ in range(rounds):
        for kind in kinds:
            enqueue, drain = one_round(url_of(f"{kind}-{round_}"), kind, jobs)
            best[kind] = [min(best[kind][0], enqueue), min(best[kind][1], drain)]
    plain = best["plain"]
    return {kind: {"enqueue_jobs_per_s": round(1 / e), "drain_runs_per_s": round(1 / d),
                   "enqueue_cost_x": round(e / plain[0], 2), "drain_cost_x": round(d / plain[1], 2)}
            for kind, (e, d) in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL too (a throwaway cluster)")
    args = parser.parse_args()
    results = {}
    waiting = {}
    with tempfile.TemporaryDirectory() as directory:
        results["sqlite"] = run(lambda tag: f"sqlite:///{directory}/{tag}.db", list(KINDS),
                                args.jobs, args.rounds)
        waiting["sqlite"] = run_waiting(lambda tag: f"sqlite:///{directory}/{tag}.db", args.jobs,
                                        args.rounds)
    if args.postgres:
        from tests.pgcluster import Cluster

        cluster = Cluster(durable=True)
        try:
            results["postgres"] = run(lambda tag: cluster.create_database(), list(KINDS), args.jobs,
                                      args.rounds)
            waiting["postgres"] = run_waiting(lambda tag: cluster.create_database(), args.jobs,
                                              args.rounds)
        finally:
            cluster.destroy()
    print(f"{'backend':<9} {'kind':<20} {'enqueue/s':>10} {'x plain':>8} {'runs/s':>9} {'x plain':>8}")
    for backend, kinds in results.items():
        for kind, r in kinds.items():
            print(f"{backend:<9} {kind:<20} {r['enqueue_jobs_per_s']:>10} {r['enqueue_cost_x']:>8} "
                  f"{r['drain_runs_per_s']:>9} {r['drain_cost_x']:>8}")
    for backend, ratios in waiting.items():
        print(f"{backend:<9} drain of plain jobs with {WAITING} waiting at a busy gate, x none "
              f"waiting: " + ", ".join(f"{k.split('_')[-2]} {v}" for k, v in ratios.items()))
    print(orjson.dumps({"kinds": results, "waiting": waiting}).decode())


if __name__ == "__main__":
    main()
