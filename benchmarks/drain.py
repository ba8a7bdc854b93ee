"""Core benchmark: bulk enqueue, drain with real supervisors, idle pickup, timeout-kill delay.

    python3 benchmarks/drain.py                      # SQLite, 1 supervisor; again recycling every 100 jobs
    python3 benchmarks/drain.py --postgres           # and PostgreSQL with 1, 2 and 3 supervisors
    options: --jobs 20000 --workers 2 --pickups 200 --kills 30 --recycle 100 --supervisors 1,2,3
             --json-out FILE

Each run is `jobrt start` as a user runs it (subprocesses), on SQLite in WAL
mode with durable client commits, or on a throwaway PostgreSQL cluster with
fsync on. The backlog is enqueued in one transaction with a short delay, so
every supervisor is up before the first job is due; drain time runs from that
moment to the last job's finish. Over the drain, the cores used by jobrt's processes, by
PostgreSQL's and by the whole machine are measured too (cpu_cores_*, and CPU
microseconds per job): when the machine's cores are all busy, neither more supervisors
nor a faster database can drain faster here. Prints a table, then one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime import connect  # noqa: E402

START_ALLOWANCE = 3.0  # seconds for the supervisors to start before the backlog is due


def write_config(directory: Path, workers: int, url: str, max_jobs: int = 0) -> Path:
    path = directory / "supervisor.toml"
    path.write_text(tomli_w.dumps({
        "storage": {"url": url, "lease": 30},
        "jobs": {"modules": ["jobs.examples"], "path": [str(REPO)]},
        "pools": {"default": {"queues": ["default"], "workers": workers, "timeout": 60,
                              "max_jobs": max_jobs, "run_as_root": True}},
    }))
    return path


class Supervisor:
    def __init__(self, config: Path, index: int):
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = str(config.parent / f"notify-{index}.sock")
        self.notify.bind(address)
        self.log = open(config.parent / f"supervisor-{index}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "start", "--config", str(config), "--log-level", "warning"],
            env=dict(os.environ, NOTIFY_SOCKET=address, PYTHONPATH=str(REPO)), stdout=self.log,
            stderr=subprocess.STDOUT)
        self.notify.settimeout(30)
        while b"READY=1" not in self.notify.recv(4096):
            pass

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.notify.close()
        self.log.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def wait_state(q, job_id: int, states=("succeeded", "failed")):
    while True:
        record = q.status(job_id)
        if record.state in states:
            return record
        time.sleep(0.0005)


def last_finish(url: str, directory: Path) -> float:
    query = "SELECT max(finished_at) FROM jobs"
    if url.startswith("sqlite"):
        with sqlite3.connect(directory / "bench.db") as conn:
            return conn.execute(query).fetchone()[0]
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(query.replace("jobs", "jobrt_jobs")).fetchone()[0]


def cpu_seconds(root: int) -> float:
    """CPU seconds used by process `root`, its live descendants and the children it reaped."""
    import psutil

    try:
        parent = psutil.Process(root)
        times = parent.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


class CpuShare:
    """Cores used over a window by jobrt (the supervisors, their workers, zygote, spares), by
    PostgreSQL (the postmaster and its backends) and by the whole machine: which one bounds a
    drain. Reaped processes count through their parent's children times."""

    def __init__(self, supervisors: list, postmaster: int | None):
        import psutil

        self.roots = {"jobrt": [s.proc.pid for s in supervisors],
                      "postgres": [postmaster] if postmaster else []}
        self.psutil = psutil
        self.start = self._read()

    def _read(self) -> dict:
        times = self.psutil.cpu_times()
        figures = {group: sum(cpu_seconds(pid) for pid in pids) for group, pids in self.roots.items()}
        figures["supervisor"], figures["preempted"] = self._supervisors_own()
        figures["machine"] = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        figures["wall"] = time.monotonic()
        return figures

    def _supervisors_own(self) -> tuple[float, int]:
        """The supervisors' own CPU seconds (the serial part of a drain), and how often they
        were preempted (involuntary context switches)."""
        cpu, preempted = 0.0, 0
        for pid in self.roots["jobrt"]:
            with contextlib.suppress(self.psutil.Error):
                process = self.psutil.Process(pid)
                times = process.cpu_times()
                cpu += times.user + times.system
                preempted += process.num_ctx_switches().involuntary
        return cpu, preempted

    def result(self, jobs: int) -> dict:
        end = self._read()
        wall = end["wall"] - self.start["wall"]
        figures = {"cpu_cores_machine": round((end["machine"] - self.start["machine"]) / wall, 2),
                   "cpu_cores_available": os.cpu_count()}
        for group, pids in self.roots.items():
            if pids:
                used = end[group] - self.start[group]
                figures[f"cpu_cores_{group}"] = round(used / wall, 2)
                figures[f"cpu_us_per_job_{group}"] = round(used / jobs * 1e6, 1)
        figures["cpu_us_per_job_supervisor"] = round((end["supervisor"] - self.start["supervisor"]) / jobs * 1e6, 1)
        figures["supervisor_preempted_per_1k_jobs"] = round((end["preempted"] - self.start["preempted"]) / jobs * 1000, 1)
        return figures


def drain(q, url: str, directory: Path, config: Path, jobs: int, supervisors: int,
          postmaster: int | None = None) -> tuple[dict, list]:
    started = time.perf_counter()
    q.enqueue_many([("jobs.examples:noop", (), {}, {"_delay": START_ALLOWANCE})] * jobs)
    due = time.time() - (time.perf_counter() - started) + START_ALLOWANCE
    enqueue_seconds = time.perf_counter() - started
    running = [Supervisor(config, index) for index in range(supervisors)]
    try:
        if time.time() > due:
            print(f"warning: supervisors took longer than {START_ALLOWANCE} s to start", file=sys.stderr)
        time.sleep(max(0.0, due - time.time()))
        share = CpuShare(running, postmaster)
        while q.counts().get("default", {}).get("succeeded", 0) < jobs:
            time.sleep(0.05)
        seconds = last_finish(url, directory) - due
        return {"enqueue_jobs_per_s": round(jobs / enqueue_seconds), "drain_jobs_per_s": round(jobs / seconds),
                "drain_seconds": round(seconds, 3), **share.result(jobs)}, running
    except BaseException:
        for supervisor in running:
            supervisor.stop()
        raise


def pickup(q, samples: int) -> dict:
    latencies = []
    for _ in range(samples):
        job_id = q.enqueue("jobs.examples:stamp")
        returned = time.time()
        record = wait_state(q, job_id)
        latencies.append((record.result - returned) * 1000)
        time.sleep(0.01)  # let the pool go idle again
    return {"pickup_p50_ms": round(percentile(latencies, 0.5), 3),
            "pickup_p99_ms": round(percentile(latencies, 0.99), 3)}


def kill_delay(q, directory: Path, samples: int, timeout: float) -> dict:
    """How long after its deadline a job stuck in C is killed. The deadline is counted from
    when the job wrote its start stamp, a little after the supervisor's own start mark, so
    small negative values are possible."""
    delays = []
    for index in range(samples):
        stamp = directory / f"stamp-{index}"
        job_id = q.enqueue("jobs.examples:c_sleep", 3600, str(stamp), _timeout=timeout)
        record = wait_state(q, job_id)
        assert "timed out" in (record.error or ""), record.error
        delays.append((record.finished_at - (float(stamp.read_text()) + timeout)) * 1000)
    return {"kill_delay_p50_ms": round(percentile(delays, 0.5), 3),
            "kill_delay_p99_ms": round(percentile(delays, 0.99), 3)}


def run(backend: str, url: str, directory: Path, args, supervisors: int, latency: bool,
        max_jobs: int = 0, cluster=None) -> dict:
    config = write_config(directory, args.workers, url, max_jobs)
    result = {"backend": backend, "supervisors": supervisors, "workers_each": args.workers, "jobs": args.jobs,
              "recycle_every": max_jobs or "-"}
    with connect(config=str(config)) as q:
        figures, running = drain(q, url, directory, config, args.jobs, supervisors,
                                 cluster.postmaster_pid() if cluster is not None else None)
        result.update(figures)
        try:
            if latency:
                result.update(pickup(q, args.pickups))
            if latency and backend == "sqlite":
                result.update(kill_delay(q, directory, args.kills, 0.2))
        finally:
            for supervisor in running:
                supervisor.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pickups", type=int, default=200)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--recycle", type=int, default=100, help="the second SQLite drain's max_jobs (0: none)")
    parser.add_argument("--supervisors", default="1,2,3", help="PostgreSQL runs: supervisors in each")
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="jobrt-bench-") as tmp:
        results.append(run("sqlite", "sqlite:///bench.db", Path(tmp), args, 1, True))
    if args.recycle:
        with tempfile.TemporaryDirectory(prefix="jobrt-bench-") as tmp:
            recycled = run("sqlite", "sqlite:///bench.db", Path(tmp), args, 1, False, args.recycle)
        recycled["drain_vs_no_recycling"] = round(recycled["drain_jobs_per_s"] / results[0]["drain_jobs_per_s"], 2)
        # What a worker's whole life (cloned, booted, recycled, reaped) costs in CPU, all processes
        extra_us = recycled["cpu_us_per_job_jobrt"] - results[0]["cpu_us_per_job_jobrt"]
        recycled["cpu_ms_per_recycle"] = round(extra_us * args.recycle / 1000, 2)
        results.append(recycled)
    if args.postgres:
        from tests.pgcluster import Cluster

        cluster = Cluster(durable=True)
        try:
            first = None
            for supervisors in [int(n) for n in args.supervisors.split(",")]:
                with tempfile.TemporaryDirectory(prefix="jobrt-bench-") as tmp:
                    result = run("postgres", cluster.create_database(), Path(tmp), args,
                                 supervisors, first is None, cluster=cluster)
                first = first or result
                result["drain_vs_first"] = round(result["drain_jobs_per_s"] / first["drain_jobs_per_s"], 2)
                results.append(result)
        finally:
            cluster.destroy()
    report(f"jobrt drain benchmark: {args.jobs} no-op jobs, {args.workers} workers per supervisor",
           results, args.json_out, 20)


def report(title: str, results: list[dict], json_out: str | None, width: int) -> None:
    """Print a table (a row per figure, a column per run), then one JSON document, also
    written to `json_out` if given."""
    print(title)
    for key in dict.fromkeys(key for result in results for key in result):
        print(f"  {key:<{width}}" + "".join(f"{str(result.get(key, '-')):>14}" for result in results))
    document = orjson.dumps(results).decode()
    print(document)
    if json_out:
        Path(json_out).write_text(document + "\n")


if __name__ == "__main__":
    main()
