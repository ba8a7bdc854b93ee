"""Network partition benchmark: the tests/chaos/test_partitions.py scenario at full size, and its figures.

    sudo python3 benchmarks/partitions.py            # 20000 jobs, 18 partitions, 2 hosts x 4 workers
    options: --jobs 20000 --partitions 18 --workers 4 --seed N --json-out FILE

Two supervisors (host-a, host-b) and a PostgreSQL run in network namespaces of their
own (tests/netns.py: needs root, ip and nft); the jobs (jobs.partitions:record) are
enqueued in one chunk per partition, and after each chunk the database is cut off from
a random host, black-holed or hung, in turn, for 1-3 leases of 4 s. Then
tests/chaos/partition_checker.py compares the runs the jobs logged with storage and the
partition windows. Prints a table, then one JSON document; exits 1 if an invariant broke
(listed on stderr, and the logs kept), 2 if this machine cannot make the namespaces.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime import connect  # noqa: E402
from tests import netns  # noqa: E402
from tests.chaos.partition_checker import check, read_runs  # noqa: E402
from tests.chaos.partitions import (  # noqa: E402
    DRAIN_WAIT, HOSTS, LEASE, MARGIN, SLACK, run_partitions, states_of, write_partition_config,
)
from tests.pgcluster import Cluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=18, help="cuts, black holes and hangs, in turn")
    parser.add_argument("--workers", type=int, default=4, help="workers per host")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--json-out")
    args = parser.parse_args()
    if args.jobs < 1 or args.partitions < 1 or args.workers < 1:
        parser.error("--jobs, --partitions and --workers must each be 1 or more")
    reason = netns.unavailable()
    if reason:
        print(f"benchmarks/partitions.py: {reason}", file=sys.stderr)
        sys.exit(2)
    network = netns.Network(["db", *HOSTS])
    try:
        cluster = Cluster(durable=True, netns=network.namespaces["db"], listen=network.addresses["db"])
        try:
            directory = Path(tempfile.mkdtemp(prefix="jobrt-partitions-"))
            figures, problems = run(network, cluster, directory, args)
        finally:
            network.heal()
            cluster.destroy()
    finally:
        leftovers = network.teardown()
    print(f"jobrt partition benchmark: {args.jobs} jobs, {len(HOSTS)} hosts x {args.workers} workers, "
          f"lease {LEASE:g} s, seed {args.seed}")
    for key, value in figures.items():
        print(f"  {key:<24}{value!s:>12}")
    document = orjson.dumps(figures).decode()
    print(document)
    if args.json_out:
        Path(args.json_out).write_text(document + "\n")
    for problem in problems + [f"teardown: {leftover}" for leftover in leftovers]:
        print(problem, file=sys.stderr)
    if problems:
        print(f"the runs logs and supervisor logs are kept in {directory}", file=sys.stderr)
    else:
        shutil.rmtree(directory)
    sys.exit(1 if problems or leftovers else 0)


def run(network: netns.Network, cluster: Cluster, directory: Path, args) -> tuple[dict, list[str]]:
    url = cluster.create_database()
    config = write_partition_config(directory, url, args.workers)
    with connect(url) as q:
        chaos = run_partitions(network, cluster, q, config, directory, args.jobs, args.partitions,
                               random.Random(args.seed))
        report = check(chaos.ids, states_of(q, chaos.ids), read_runs(directory), chaos.windows, MARGIN, SLACK)
    kinds = collections.Counter(window.kind for window in chaos.windows)
    figures = {**report.figures(), **{f"partitions: {kind}": n for kind, n in kinds.items()},
               "margin_s": MARGIN, "seconds": round(chaos.seconds, 1)}
    problems = report.problems()
    if not chaos.drained:
        problems.append(f"not drained: jobs still not ended {DRAIN_WAIT:g} s after the last heal")
    if any(code != 0 for code in chaos.stop_codes.values()):
        problems.append(f"a supervisor did not stop cleanly on SIGTERM (exit status per host: {chaos.stop_codes})")
    return figures, problems


if __name__ == "__main__":
    main()
