"""Core benchmark: bulk enqueue, drain with a real supervisor, idle pickup, timeout-kill delay.

    python3 benchmarks/drain.py [--jobs 20000] [--workers 2] [--json-out FILE]

Runs `jobrt start` as a user would (a subprocess, SQLite in WAL mode with
durable client commits) in a temp dir. Prints a table, then one JSON document.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
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


def write_config(directory: Path, workers: int, url: str) -> Path:
    path = directory / "supervisor.toml"
    path.write_text(tomli_w.dumps({
        "storage": {"url": url, "lease": 30},
        "jobs": {"modules": ["jobs.examples"], "path": [str(REPO)]},
        "pools": {"default": {"queues": ["default"], "workers": workers, "timeout": 60}},
    }))
    return path


class Supervisor:
    def __init__(self, config: Path):
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = str(config.parent / "notify.sock")
        self.notify.bind(address)
        self.log = open(config.parent / "supervisor.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "start", "--config", str(config), "--log-level", "warning"],
            env=dict(os.environ, NOTIFY_SOCKET=address, PYTHONPATH=str(REPO)), stdout=self.log,
            stderr=subprocess.STDOUT)
        self.notify.settimeout(30)
        while b"READY=1" not in self.notify.recv(4096):
            pass
        self.ready_at = time.time()

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


def drain(q, directory: Path, config: Path, jobs: int) -> dict:
    started = time.perf_counter()
    ids = q.enqueue_many([("jobs.examples:noop", ())] * jobs)
    enqueue_seconds = time.perf_counter() - started
    supervisor = Supervisor(config)
    try:
        while q.counts().get("default", {}).get("succeeded", 0) < jobs:
            time.sleep(0.05)
        last = max(q.storage.get(job_id).finished_at for job_id in (ids[-1], ids[-2], ids[-3]))
        first = q.storage.get(ids[0]).started_at
        drain_seconds = last - supervisor.ready_at
        return {"jobs": jobs, "enqueue_jobs_per_s": jobs / enqueue_seconds,
                "drain_jobs_per_s": jobs / drain_seconds, "drain_seconds": drain_seconds,
                "first_claim_after_ready_ms": (first - supervisor.ready_at) * 1000,
                "supervisor": supervisor}
    except BaseException:
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
    return {"pickup_p50_ms": percentile(latencies, 0.5), "pickup_p99_ms": percentile(latencies, 0.99),
            "pickup_samples": samples}


def kill_delay(q, directory: Path, samples: int, timeout: float) -> dict:
    delays = []
    for index in range(samples):
        stamp = directory / f"stamp-{index}"
        job_id = q.enqueue("jobs.examples:c_sleep", 3600, str(stamp), _timeout=timeout)
        record = wait_state(q, job_id)
        assert "timed out" in (record.error or ""), record.error
        delays.append((record.finished_at - (float(stamp.read_text()) + timeout)) * 1000)
    return {"kill_delay_p50_ms": percentile(delays, 0.5), "kill_delay_p99_ms": percentile(delays, 0.99),
            "kill_samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pickups", type=int, default=200)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobrt-bench-") as tmp:
        directory = Path(tmp)
        config = write_config(directory, args.workers, "sqlite:///bench.db")
        with connect(config=str(config)) as q:
            result = drain(q, directory, config, args.jobs)
            supervisor = result.pop("supervisor")
            try:
                result.update(pickup(q, args.pickups))
                result.update(kill_delay(q, directory, args.kills, 0.2))
            finally:
                supervisor.stop()
    result = {"backend": "sqlite", "workers": args.workers, **{k: round(v, 3) if isinstance(v, float) else v
                                                                 for k, v in result.items()}}
    print(f"jobrt drain benchmark: {args.jobs} no-op jobs, {args.workers} workers, SQLite WAL")
    for key, value in result.items():
        print(f"  {key:<28} {value}")
    document = orjson.dumps(result).decode()
    print(document)
    if args.json_out:
        Path(args.json_out).write_text(document + "\n")


if __name__ == "__main__":
    main()
