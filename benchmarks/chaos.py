"""Chaos benchmark: the tests/chaos drain scenario at full size, and its figures.

    python3 benchmarks/chaos.py                      # SQLite, 1 supervisor, 20000 jobs
    python3 benchmarks/chaos.py --postgres           # and PostgreSQL with 2 supervisors
    options: --jobs 20000 --workers 4 --seed N --json-out FILE

Jobs (jobs.chaos: one slow job in 4, the rest quick) are enqueued in chunks
while supervisors (`jobrt start`) drain them; every 50 ms a random worker is
SIGKILLed, every 1-3 s a supervisor is SIGKILLed and restarted at once.
tests/chaos/checker.py then compares the runs log with storage. Prints a
table, then one JSON document; exits 1 if an invariant broke (listed on stderr).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import orjson
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime import connect  # noqa: E402
from tests.chaos.checker import (  # noqa: E402
    STALL, chaos_items, check, held_bound, postgres_missing, read_runs, records_of, run_chaos,
    write_chaos_config,
)

PREFETCH = 2


def run(backend: str, url: str, directory: Path, supervisors: int, args) -> tuple[dict, list[str]]:
    config = write_chaos_config(directory, url, args.workers, PREFETCH)
    log = directory / "runs.log"
    try:
        with connect(config=str(config)) as q:
            chaos = run_chaos(q, config, chaos_items(log, args.jobs), supervisors,
                              rng=random.Random(args.seed), timeout=args.timeout)
            report = check(chaos.ids, read_runs(log), records_of(q.storage, chaos.ids), chaos,
                           held_bound(args.workers, PREFETCH))
    finally:
        _kill_leftovers()
    figures = {"backend": backend, "supervisors": supervisors, "workers_each": args.workers,
               **report.figures(), "seconds": round(chaos.seconds, 1)}
    problems = report.problems()
    if not chaos.drained:
        problems.append(f"not drained: no job ended for {STALL:g} s, or {args.timeout:g} s passed")
    if any(chaos.stop_codes) or chaos.survivors:
        problems.append(f"final stop: exit codes {chaos.stop_codes}, {chaos.survivors} workers left")
    return figures, problems


def _kill_leftovers() -> None:
    """A supervisor that never became ready is still our child: end it by its pid."""
    for child in psutil.Process().children():
        try:
            child.kill()
            child.wait(10)
        except psutil.Error:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=4, help="workers per supervisor")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before giving up on the drain")
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL, 2 supervisors")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    results, problems = [], {}
    with tempfile.TemporaryDirectory(prefix="jobrt-chaos-") as tmp:
        figures, problems["sqlite"] = run("sqlite", "sqlite:///chaos.db", Path(tmp), 1, args)
        results.append(figures)
    if args.postgres:
        missing = postgres_missing()
        if missing:
            print(f"PostgreSQL skipped: {missing}", file=sys.stderr)
        else:
            from tests.pgcluster import Cluster

            cluster = Cluster(durable=True)
            try:
                with tempfile.TemporaryDirectory(prefix="jobrt-chaos-") as tmp:
                    figures, problems["postgres"] = run("postgres", cluster.create_database(),
                                                        Path(tmp), 2, args)
                    results.append(figures)
            finally:
                cluster.destroy()
    print(f"jobrt chaos benchmark: {args.jobs} jobs, seed {args.seed}, a worker SIGKILLed every "
          f"50 ms, a supervisor every 1-3 s")
    for key in dict.fromkeys(key for result in results for key in result):
        print(f"  {key:<20}" + "".join(f"{str(result.get(key, '-')):>14}" for result in results))
    document = orjson.dumps(results).decode()
    print(document)
    if args.json_out:
        Path(args.json_out).write_text(document + "\n")
    broken = {backend: found for backend, found in problems.items() if found}
    for backend, found in broken.items():
        for problem in found:
            print(f"{backend}: {problem}", file=sys.stderr)
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
