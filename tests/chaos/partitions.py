"""The network partition scenario, shared by tests/chaos/test_partitions.py and
benchmarks/partitions.py.

    run_partitions(): two supervisors (`jobrt start` in the namespaces host-a and host-b
                      of tests/netns.py, one PostgreSQL in the namespace db) drain
                      jobs.partitions:record jobs, enqueued by this process in one chunk
                      per partition; CALM s after each chunk the nemesis cuts the
                      database off from a random host, for HOLD leases, then heals.
                      The kinds alternate: a cut (the host's link down), a black hole
                      (every packet dropped), a hung database (every PostgreSQL process
                      SIGSTOPped: all hosts lose it). Then it waits for every job to end.
                      -> PartitionRun: the ids, the partition windows (wall clock; also
                      written to windows.log beside the runs logs)
    tests/chaos/partition_checker.py checks the runs the jobs logged against both.

Each chunk starts with LONG_PER_CHUNK jobs of LONG leases, so some run at every cut
and outlive the lease: a host that does not stop its runs when it loses the database
(fencing itself) overlaps with the host that takes its jobs over.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from tests.chaos.partition_checker import HUNG_DATABASE, Window
from tests.conftest import END_STATES, REPO
from tests.netns import Network

HOSTS = ("host-a", "host-b")
KINDS = ("cut", "black hole", HUNG_DATABASE)  # in turn
LEASE = 4.0  # seconds: [storage] lease, short so that partitions outlast it in a short test
HOLD = (1.0, 3.0)  # leases a partition lasts, uniform
CALM = (1.0, 2.0)  # seconds from a chunk's enqueue to the next partition, uniform
QUICK = 0.005  # seconds a quick job works
LONG = 2.0  # leases a long job works
LONG_PER_CHUNK = 2
TRIES = 25  # a job fails only if this many of its runs are cut short
MARGIN = 0.5  # seconds two runs of one job may overlap (a fenced run killed, late by this much)
SLACK = 1.0  # seconds around a partition in which a run still counts as cut off by it
DRAIN_WAIT = 180.0  # seconds after the last heal for every job to end
POLL = 0.5  # seconds between looks at the counts while the jobs drain


def write_partition_config(directory: Path, url: str, workers: int) -> Path:
    """One supervisor.toml for every host: PostgreSQL over TCP, a short lease, immediate retries."""
    path = directory / "supervisor.toml"
    path.write_text(tomli_w.dumps({
        "storage": {"url": url, "lease": LEASE},
        "jobs": {"modules": ["jobs.partitions"], "path": [str(REPO)]},
        "pools": {"default": {"queues": ["default"], "workers": workers, "timeout": 10 * LEASE * LONG,
                              "backoff": 0, "grace": 10, "run_as_root": True}},
    }))
    return path


def chunk_items(directory: Path, size: int) -> list[tuple]:
    """enqueue_many items: LONG_PER_CHUNK long jobs first (claimed at once), then quick ones."""
    options = {"_tries": TRIES}
    return [("jobs.partitions:record", (str(directory), LEASE * LONG if index < LONG_PER_CHUNK else QUICK), {},
             options) for index in range(size)]


@dataclass
class PartitionRun:
    ids: list[int] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    drained: bool = False  # every enqueued job ended within DRAIN_WAIT s of the last heal
    seconds: float = 0.0  # from the first enqueue until every job ended (or the wait ran out)
    stop_codes: dict[str, int | None] = field(default_factory=dict)  # per host; None: SIGKILLed


def run_partitions(network: Network, cluster, q, config: Path, directory: Path, jobs: int,
                   partitions: int, rng: random.Random) -> PartitionRun:
    """Enqueue `jobs` in `partitions` chunks, partition after each, heal, wait for every
    job to end, stop the supervisors. `q` is this process's connection to the database."""
    run = PartitionRun()
    supervisors = {host: network.start_supervisor(host, config, directory / f"supervisor-{host}.log")
                   for host in HOSTS}
    began = time.monotonic()
    sizes = [jobs // partitions + (index < jobs % partitions) for index in range(partitions)]
    try:
        for index, size in enumerate(sizes):
            run.ids += q.enqueue_many(chunk_items(directory, size))
            time.sleep(rng.uniform(*CALM))  # the nemesis's pace: runs start meanwhile
            kind, host = KINDS[index % len(KINDS)], rng.choice(HOSTS)
            start = time.time()
            if kind == "cut":
                network.cut(host)
            elif kind == "black hole":
                network.black_hole(host)
            else:
                network.hang(cluster)
            try:
                time.sleep(rng.uniform(*HOLD) * LEASE)  # how long the partition lasts
            finally:
                network.heal()
            window = Window(kind, frozenset(HOSTS if kind == HUNG_DATABASE else (host,)), start, time.time())
            run.windows.append(window)
            with open(directory / "windows.log", "a") as log:  # beside the runs logs, for a reader
                log.write(f"{window.start:.6f} {window.end:.6f} {kind} {' '.join(sorted(window.hosts))}\n")
        deadline = time.monotonic() + DRAIN_WAIT
        while not (drained := _ended(q) >= len(run.ids)) and time.monotonic() < deadline:
            time.sleep(POLL)  # a look at the counts now and then: draining takes seconds
        run.drained = drained
        run.seconds = time.monotonic() - began
    finally:
        network.heal()
        run.stop_codes = {host: network.stop(process) for host, process in supervisors.items()}
    return run


def states_of(q, ids: list[int]) -> dict[int, str | None]:
    """Each job's state in storage (None for a job storage does not know)."""
    return {job_id: (record.state if (record := q.storage.get(job_id)) else None) for job_id in ids}


def _ended(q) -> int:
    return sum(n for counts in q.counts().values() for state, n in counts.items() if state in END_STATES)
