"""Real network partitions between test hosts on this machine (tests/netns.py): two
supervisors in their own network namespaces drain jobs from a PostgreSQL in a third while
the database is cut off from one host, black-holed, or hung, in turn
(tests/chaos/partitions.py). The checker (tests/chaos/partition_checker.py) then wants:
no job lost, no run of a job never enqueued, no two runs of one job at once beyond
MARGIN, and a job run twice only if one of its runs was cut off by a partition.
benchmarks/partitions.py runs the same at full size (20,000 jobs) and prints the figures."""

from __future__ import annotations

import random

import pytest

from runtime import connect
from tests import netns
from tests.chaos.partition_checker import check, read_runs
from tests.chaos.partitions import HOSTS, MARGIN, SLACK, run_partitions, states_of, write_partition_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 1200
PARTITIONS = 6  # two of each kind
WORKERS = 3  # per host


@pytest.fixture
def network():
    """The namespaces db, host-a and host-b, joined by a bridge; deleted afterwards, whatever happened."""
    with netns.built(["db", *HOSTS]) as network:
        yield network


@pytest.fixture
def database(network):
    """PostgreSQL in the namespace db, listening on its address there."""
    with netns.postgres(network) as cluster:
        yield cluster


def test_partitions_lose_no_job_and_never_run_one_job_twice_at_once(network, database, tmp_path, seed):
    url = database.create_database()
    config = write_partition_config(tmp_path, url, WORKERS)
    with connect(url) as q:
        run = run_partitions(network, database, q, config, tmp_path, JOBS, PARTITIONS, random.Random(seed))
        report = check(run.ids, states_of(q, run.ids), read_runs(tmp_path), run.windows, MARGIN, SLACK)
    print(f"seed={seed}", report.figures(), f"drained={run.drained} in {run.seconds:.0f} s",
          f"stop codes {run.stop_codes}")
    problems = report.problems()
    if not run.drained:
        problems.append("not every job ended after the last heal")
    if any(code != 0 for code in run.stop_codes.values()):
        problems.append(f"a supervisor did not stop cleanly on SIGTERM (exit status per host: {run.stop_codes})")
    assert problems == [], f"seed={seed} (logs in {tmp_path}): " + "; ".join(problems)
