"""jobrt against its peers: the same workloads on jobrt, huey, Celery, RQ, Dramatiq and
procrastinate, side by side in one run.

    python3 benchmarks/peers.py                          # every peer, 10000 jobs
    python3 benchmarks/peers.py --quick                  # a smoke run: 500 jobs, few samples
    python3 benchmarks/peers.py --peers jobrt,huey --jobs 20000 --json-out peers.json --plots DIR

The peers run in a virtual environment of pinned versions (requirements-peers.txt), built
under ~/.cache/jobrt-peers-venv on the first run and whenever that file changes, with
jobrt installed editable from this checkout; this script re-runs itself there. It starts
what the peers need and stops it at the end (by pid, on Ctrl-C or an error too):

    redis-server  (apt-get install redis-server where missing) on a free port of
                  127.0.0.1, AOF with appendfsync everysec, always while enqueue is
                  timed: Celery, RQ, Dramatiq
    postgres      a throwaway cluster (initdb; fsync on): procrastinate
    jobrt, huey   SQLite files

Each peer's workers are started with its own CLI, --workers processes. The workloads
(benchmarks/peers_workloads.py): one-by-one and bulk enqueue, drain of N no-op jobs,
idle pickup latency, kill of a job spinning in C past its 1 s timeout, drain with
workers recycled every 100 jobs, idle PSS. Prints a table, then one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_services import Postgres, Processes, Redis, default_venv, ensure_venv  # noqa: E402

# name -> (module, services it needs)
PEERS = {
    "jobrt": ("peers_jobrt", ()),
    "huey": ("peers_huey", ()),
    "celery": ("peers_celery", ("redis",)),
    "rq": ("peers_rq", ("redis",)),
    "dramatiq": ("peers_dramatiq", ("redis",)),
    "procrastinate": ("peers_procrastinate", ("postgres",)),
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10000, help="jobs enqueued in bulk and drained (default 10000)")
    parser.add_argument("--one-by-one", type=int, default=2000,
                        help="jobs enqueued one call each (default 2000, at most --jobs)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of: {', '.join(PEERS)}")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per peer (default 2)")
    parser.add_argument("--pickups", type=int, default=20, help="idle pickup samples (default 20)")
    parser.add_argument("--kills", type=int, default=3, help="C-busy timeout kill samples (default 3)")
    parser.add_argument("--kill-wait", type=float, default=10,
                        help="seconds past the deadline to wait for a kill (default 10)")
    parser.add_argument("--redis-fsync", default="everysec", choices=("always", "everysec", "no"),
                        help="Redis appendfsync but while enqueue is timed, when it is always (default everysec)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 jobs, 5 pickups, 1 kill")
    parser.add_argument("--json-out", help="also write the JSON document to this file")
    parser.add_argument("--plots", help="write peers-throughput.png and peers-latency.png to this directory")
    parser.add_argument("--venv", default=str(default_venv()), help="the peers' virtual environment")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, databases)")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of a failed step")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.pickups, args.kills = min(args.jobs, 500), min(args.pickups, 5), 1
    unknown = set(args.peers.split(",")) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}; known: {', '.join(PEERS)}")
    return args


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return {"cores": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}


def start_services(names: list[str], processes: Processes, scratch: Path, args) -> dict:
    """Start what the peers need; a service that fails leaves its error for its peers."""
    needed = {service for name in names for service in PEERS[name][1]}
    services = {}
    if "redis" in needed:
        try:
            services["redis"] = Redis(processes, scratch / "redis", args.redis_fsync)
            os.environ["PEERS_REDIS"] = services["redis"].url(0).rsplit("/", 1)[0]
        except Exception as error:  # noqa: BLE001 - reported for the peers that need it
            services["redis"] = error
    if "postgres" in needed:
        try:
            services["postgres"] = Postgres(processes, scratch / "postgres")
            os.environ["PEERS_PG"] = services["postgres"].create_database("peers")
        except Exception as error:  # noqa: BLE001
            services["postgres"] = error
    return services


def run(args) -> list[dict]:
    from peers_workloads import run_peer

    names = args.peers.split(",")
    processes = Processes()
    scratch = Path(tempfile.mkdtemp(prefix="jobrt-peers-"))
    os.chmod(scratch, 0o755)  # PostgreSQL's server runs as its own user
    results = []
    try:
        services = start_services(names, processes, scratch, args)
        for name in names:
            module_name, needs = PEERS[name]
            failed = [f"{service}: {services[service]}" for service in needs
                      if isinstance(services[service], Exception)]
            if failed:
                results.append({"peer": name, "errors": {"start": "; ".join(failed)}})
                continue
            directory = scratch / name
            directory.mkdir()
            os.environ["PEERS_DIR"] = str(directory)
            peer = None
            try:
                peer = importlib.import_module(module_name).Adapter(args.workers, directory)
                durable = services["redis"].durable if "redis" in needs else contextlib.nullcontext
                results.append(run_peer(peer, processes, args, durable))
            except Exception as error:  # noqa: BLE001 - the run goes on with the others
                results.append({"peer": name, "errors": {"start": f"{type(error).__name__}: {error}"}})
            finally:
                if peer is not None:
                    peer.close()
    finally:
        processes.stop_all()
        if args.keep:
            print(f"scratch directory kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return results


def main(argv: list[str]) -> None:
    args = parse(argv)
    venv = Path(args.venv)
    if Path(sys.prefix).resolve() != venv.resolve():
        python = ensure_venv(venv)
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])
    # SIGTERM ends the run as Ctrl-C does: the finally blocks stop what was started
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from peers_report import plot, table

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    results = run(args)
    document = {"date": started,
                "machine": machine(), "command": "python3 benchmarks/peers.py " + " ".join(argv),
                "jobs": args.jobs, "workers": args.workers, "redis_appendfsync": args.redis_fsync,
                "results": results}
    print(table(document))
    text = json.dumps(document, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    if args.plots:
        for path in plot(document, Path(args.plots)):
            print(f"plot written: {path}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
