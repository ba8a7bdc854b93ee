"""The workloads of benchmarks/peers.py, the same for every peer, run through its adapter
(a `Peer`: one module per peer, benchmarks/peers_<name>.py).

For each peer, on storage emptied before each step:

    enqueue one-by-one  M jobs, one durable enqueue call each, no workers running
    enqueue bulk        N jobs with the peer's bulk call (a loop where it has none)
       -> workers started (its CLI, a process group per command)
    drain               the N jobs: jobs/s from the first completion to the last
    idle pickup         one job into the idle workers, K times: its start - enqueue's return
    idle memory         PSS of every process of the peer (smaps_rollup), workers = the leaves
    C-busy kill         a job spinning in C with a 1 s timeout: its process's exit - deadline
       -> workers stopped
    drain, recycling    N jobs again with the peer's max-tasks-per-child option at 100

Completions are read from the jobs' own marks (benchmarks/peers_marks.py), so every peer
pays the same small cost for being measured. Every wait is bounded; a step that fails is
recorded with its error and the others go on.
"""

from __future__ import annotations

import os
import random
import select
import statistics
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Protocol

from peers_marks import MARK, SPIN
from peers_services import Processes, log_tail, process_tree, pss_kib, wait_until

BENCHMARKS = Path(__file__).resolve().parent
RECYCLE_EVERY = 100
TIMEOUT = 1.0  # seconds: the C-busy job's timeout
START_WAIT = 30.0  # seconds for a job to start (workers starting, polling peers)


class Peer(Protocol):
    """What a peer's adapter (class `Adapter(workers, directory)` in its module) provides. The
    module is also what the peer's workers import for the jobs, so it imports nothing the
    workers would not: the driver's own imports stay in the adapter's methods."""

    name: str
    distribution: str  # the installed distribution whose version is reported
    bulk_api: str  # the bulk enqueue call used, or "" where there is none (a loop of enqueues)
    recycle_option: str  # the option recycling a worker after N jobs, or "" where there is none
    no_recycle: str  # why there is no recycling figure, where there is none
    timeout_kind: str  # how the job's timeout is enforced
    hard_timeout: bool  # whether it is ever enforced on a job stuck in C
    started_as: str  # the worker command line, for the notes
    directory: Path  # the peer's own scratch directory

    def reset(self) -> None:
        """Empty the peer's storage: no jobs, queued or finished."""

    def enqueue_one(self) -> None:
        """Enqueue one mark job, durably, as a user enqueues one job."""

    def enqueue_bulk(self, count: int) -> None:
        """Enqueue `count` mark jobs with the peer's bulk call (a loop where there is none)."""

    def enqueue_spin(self) -> None:
        """Enqueue one spin job with a 1 s timeout and no retries."""

    def worker_commands(self, recycle: int) -> list[list[str]]:
        """The command lines starting the workers (recycling every `recycle` jobs, 0 = never),
        run with the venv's bin directory first on PATH."""

    def close(self) -> None:
        """Close the driver's connections."""


class Session:
    """One start of a peer's workers, with their own mark files; stopped on leaving."""

    def __init__(self, peer: Peer, processes: Processes, directory: Path, recycle: int = 0):
        directory.mkdir(parents=True, exist_ok=True)
        self.peer, self.processes, self.directory, self.recycle = peer, processes, directory, recycle
        self.marks = directory / "marks"
        self.spins = directory / "spins"
        self.procs = []

    def __enter__(self) -> "Session":
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        env = dict(os.environ, PEERS_MARK=str(self.marks), PEERS_SPIN=str(self.spins),
                   PYTHONPATH=str(BENCHMARKS), PATH=path)
        for index, command in enumerate(self.peer.worker_commands(self.recycle)):
            self.procs.append(self.processes.start(command, self.directory / f"workers-{index}.log",
                                                   env=env, cwd=self.directory))
        return self

    def __exit__(self, *exc) -> None:
        self.processes.stop(self.procs)

    def check_running(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = log_tail(self.directory / f"workers-{index}.log")
                raise RuntimeError(f"worker command exited with {proc.returncode}: {tail}")

    def count(self, path: Path, size: int) -> int:
        try:
            return path.stat().st_size // size
        except FileNotFoundError:
            return 0

    def read(self, path: Path, record) -> list[tuple]:
        data = path.read_bytes()
        return list(record.iter_unpack(data[:len(data) - len(data) % record.size]))

    def wait_count(self, path: Path, size: int, above: int, timeout: float, what: str) -> None:
        def reached():
            self.check_running()
            return self.count(path, size) > above

        wait_until(reached, timeout, interval=0.001, what=what)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def timed(call, count: int) -> float:
    started = time.perf_counter()
    call()
    return round(count / (time.perf_counter() - started))


def drain(session: Session, count: int, bound: float, key: str) -> dict:
    """Wait (at most `bound` seconds) for `count` marks; jobs/s from the first to the last."""
    deadline = time.monotonic() + bound
    while session.count(session.marks, MARK.size) < count and time.monotonic() < deadline:
        session.check_running()
        time.sleep(0.005)
    stamps = [stamp for stamp, _ in session.read(session.marks, MARK)] if session.marks.exists() else []
    if len(stamps) < 2:
        raise RuntimeError(f"{len(stamps)} of {count} jobs done in {bound:g} s")
    first, last = min(stamps), max(stamps)
    name = key.removesuffix("_per_s")
    if len(stamps) < count:
        rate = len(stamps) / (time.time() - first)
        return {key: round(rate), f"{name}_note": f"{name.replace('_', ' ')}: only {len(stamps)} of {count} "
                                                  f"jobs done {bound:g} s after the workers started"}
    return {key: round((count - 1) / (last - first)), f"{name}_seconds": round(last - first, 3)}


def pickup(peer: Peer, session: Session, samples: int, rng: random.Random) -> dict:
    """One job into the idle workers at a time, after a random 0.2-0.6 s pause."""
    latencies = []
    for _ in range(samples):
        time.sleep(rng.uniform(0.2, 0.6))
        before = session.count(session.marks, MARK.size)
        peer.enqueue_one()
        returned = time.time()
        session.wait_count(session.marks, MARK.size, before, START_WAIT, "an idle pickup")
        started = session.read(session.marks, MARK)[before][0]
        latencies.append((started - returned) * 1000)
    return {"pickup_p50_ms": round(statistics.median(latencies), 2),
            "pickup_p90_ms": round(percentile(latencies, 0.9), 2)}


def idle_memory(session: Session, ran_jobs: set[int]) -> dict:
    """PSS of every process of the peer. Its workers are those of them that ran the pickup
    jobs, or where none did (RQ runs each job in a child forked for it), the leaves of its
    process trees."""
    trees = {}
    for proc in session.procs:
        trees.update(process_tree(proc.pid))
    sizes = {pid: pss_kib(pid) for pid in trees}
    workers = [pid for pid in trees if pid in ran_jobs] or [pid for pid, children in trees.items() if not children]
    measured = [sizes[pid] for pid in workers if sizes[pid] is not None]
    if not measured:
        raise RuntimeError("no worker process to measure")
    return {"worker_pss_mib": round(statistics.mean(measured) / 1024, 1),
            "all_pss_mib": round(sum(size for size in sizes.values() if size) / 1024, 1),
            "processes": len(trees),
            "pss_kib": {str(pid): {"pss": sizes[pid], "worker": pid in workers} for pid in trees}}


def exit_time(pid: int, until: float) -> float | None:
    """When process `pid` exits (time.time()), or None if it is still running at `until`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return time.time()  # already gone: an upper bound
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        remaining = until - time.time()
        if remaining > 0 and poller.poll(remaining * 1000):
            return time.time()
        return None
    finally:
        os.close(fd)


def busy_kill(peer: Peer, session: Session, samples: int, wait: float) -> dict:
    """How long after its 1 s deadline a job spinning in C has its process killed. The
    deadline counts from the job's own start stamp, a little after the peer's start mark,
    so a small negative figure is possible. The first job not killed `wait` seconds after
    its deadline ends the samples: a stuck worker stays stuck."""
    delays = []
    for index in range(samples):
        peer.enqueue_spin()
        session.wait_count(session.spins, SPIN.size, index, START_WAIT, "the C-busy job to start")
        started, pid = session.read(session.spins, SPIN)[index]
        deadline = started + TIMEOUT
        ended = exit_time(pid, deadline + wait)
        if ended is None:
            return {"kill_p50_ms": None, "kill_summary": f"> {wait:g} s" if peer.hard_timeout else "no hard timeout",
                    "kill_note": f"C-busy job still running {wait:g} s past its {TIMEOUT:g} s deadline; "
                                 f"timeout: {peer.timeout_kind}"}
        delays.append((ended - deadline) * 1000)
        time.sleep(0.5)  # the replacement worker starts
    return {"kill_p50_ms": round(statistics.median(delays), 1), "kill_max_ms": round(max(delays), 1)}


def run_peer(peer: Peer, processes: Processes, args, durable) -> dict:
    """Every workload on one peer; a failed step is recorded under "errors". The enqueue
    figures are taken inside `durable()`: the storage on disk when each call returns."""
    result: dict = {"peer": peer.name, "version": metadata.version(peer.distribution), "workers": args.workers,
                    "bulk_api": peer.bulk_api or "none: a loop of enqueues", "started_as": peer.started_as,
                    "errors": {}}
    rng = random.Random(16)
    one_by_one = min(args.jobs, args.one_by_one)
    bound = 30 + args.jobs / 50  # seconds: 230 s for 10000 jobs, enough for 50 jobs/s

    def step(name: str, call) -> bool:
        try:
            result.update(call() or {})
            return True
        except Exception as error:  # noqa: BLE001 - reported in the table, the run goes on
            result["errors"][name] = f"{type(error).__name__}: {error}"
            if args.verbose:
                traceback.print_exc()
            return False

    def enqueue_one_by_one():
        peer.reset()
        with durable():
            rate = timed(lambda: [peer.enqueue_one() for _ in range(one_by_one)], one_by_one)
        return {"enqueue_one_per_s": rate, "enqueue_one_jobs": one_by_one}

    def plain_session():
        with Session(peer, processes, peer.directory / "drain") as session:
            if not step("drain", lambda: drain(session, args.jobs, bound, "drain_per_s")):
                return
            step("pickup", lambda: pickup(peer, session, args.pickups, rng))
            time.sleep(1.0)  # the last pickup's job finishes: RQ's work horse exits
            step("memory", lambda: idle_memory(session, {pid for _, pid in session.read(session.marks, MARK)}))
            step("kill", lambda: busy_kill(peer, session, args.kills, args.kill_wait))

    def recycling_session():
        if not peer.recycle_option:
            result["drain_recycled_note"] = f"recycling: {peer.no_recycle}"
            return
        peer.reset()
        peer.enqueue_bulk(args.jobs)
        with Session(peer, processes, peer.directory / "recycled", recycle=RECYCLE_EVERY) as session:
            # a peer whose recycling stalls gets less time: its figure is clear by then
            result.update(drain(session, args.jobs, 20 + args.jobs / 100, "drain_recycled_per_s"))
        if result.get("drain_per_s") and result.get("drain_recycled_per_s"):
            result["recycled_ratio"] = round(result["drain_recycled_per_s"] / result["drain_per_s"], 2)

    def bulk():
        peer.reset()
        with durable():
            return {"enqueue_bulk_per_s": timed(lambda: peer.enqueue_bulk(args.jobs), args.jobs)}

    print(f"[{peer.name}] enqueue one-by-one", file=sys.stderr)
    step("enqueue one-by-one", enqueue_one_by_one)
    print(f"[{peer.name}] bulk enqueue, drain, pickup, memory, C-busy kill", file=sys.stderr)
    if step("enqueue bulk", bulk):
        step("workers", plain_session)
    print(f"[{peer.name}] drain recycling every {RECYCLE_EVERY}", file=sys.stderr)
    step("drain recycled", recycling_session)
    return result
