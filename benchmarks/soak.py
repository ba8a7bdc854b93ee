"""Soak: a big backlog drained for a long time, to show that the supervisor's resources stay
flat while the table grows (retention keeps the ended jobs).

    python3 benchmarks/soak.py                         # SQLite, 1,000,000 jobs, 30 minutes
    python3 benchmarks/soak.py --postgres --minutes 60
    python3 benchmarks/soak.py --plot-only docs/benchmarks/soak-sqlite.json
    options: --jobs N --minutes M --workers 2 --every 5 --retention S --out DIR

Enqueues --jobs no-op jobs (enqueue_many, chunks of 10,000), starts `jobrt start` (its
metrics endpoint on a local port), and every --every seconds samples: the supervisor's
RSS, its open fds (/proc/PID/fd), its CPU use, the mean time of its claim round trip
(exchange: settle + claim, from its metrics' histogram), the drain rate (succeeded jobs
per second, from its metrics), the backlog, the ended jobs kept, and the size of the WAL
(SQLite: the -wal file; PostgreSQL: pg_wal) and of the database. After each sample it tops
the backlog up to --jobs again, so the drain never runs dry. Writes the samples as JSON
and a PNG of them (matplotlib; without it, only the JSON: --plot-only draws it later)
into --out, and prints the first and last decile of each series after the first 30 s,
and their ratio ("flat": within 10 %).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
import psutil
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from drain import Supervisor  # noqa: E402
from runtime import connect  # noqa: E402

CHUNK = 10_000
FLAT = 0.10  # a series is flat when its last decile is within 10 % of its first
WARMUP_S = 30.0  # samples before this are left out of the deciles: the WAL and caches fill up
# The table's own series grow by design (retention keeps the ended jobs): shown, not judged.
TABLE = ("pending", "ended", "db_mib")
SERIES = {  # key: (label, unit)
    "rss_mib": ("supervisor RSS", "MiB"),
    "fds": ("supervisor open fds", "fds"),
    "cpu_percent": ("supervisor CPU", "%"),
    "exchange_ms": ("claim round trip (exchange), mean", "ms"),
    "drain_jobs_per_s": ("drain rate", "jobs/s"),
    "pending": ("backlog (pending jobs)", "jobs"),
    "ended": ("ended jobs kept", "jobs"),
    "wal_mib": ("WAL size", "MiB"),
    "db_mib": ("database size", "MiB"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(directory: Path, url: str, workers: int, port: int, retention: float | None) -> Path:
    storage = {"url": url, "lease": 30}
    if retention is not None:
        storage["retention"] = retention
    path = directory / "supervisor.toml"
    path.write_text(tomli_w.dumps({
        "storage": storage,
        "jobs": {"modules": ["jobs.examples"], "path": [str(REPO)]},
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "pools": {"default": {"queues": ["default"], "workers": workers, "timeout": 60,
                              "run_as_root": True}},
    }))
    return path


def top_up(q, target: int) -> int:
    """Enqueue no-op jobs until `target` are pending; how many it enqueued."""
    missing = max(0, target - q.counts().get("default", {}).get("pending", 0))
    for done in range(0, missing, CHUNK):
        q.enqueue_many([("jobs.examples:noop", ())] * min(CHUNK, missing - done))
    return missing


def scrape(port: int) -> dict:
    """The numbers of the supervisor's metrics that the samples need."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {"exchange_sum": 0.0, "exchange_count": 0.0, "succeeded": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("operation") == "exchange" and sample.name.endswith("_sum"):
                found["exchange_sum"] = sample.value
            elif sample.labels.get("operation") == "exchange" and sample.name.endswith("_count"):
                found["exchange_count"] = sample.value
            elif sample.name == "jobrt_jobs_total" and sample.labels.get("outcome") == "succeeded":
                found["succeeded"] += sample.value
    return found


class Sizes:
    """The WAL's and the database's size, in MiB."""

    def __init__(self, url: str, directory: Path, cluster=None):
        self.url, self.directory, self.cluster = url, directory, cluster

    def read(self) -> tuple[float, float]:
        if self.cluster is None:
            db = self.directory / "soak.db"
            wal = Path(str(db) + "-wal")
            return _mib(_size(wal)), _mib(_size(db))
        import psycopg

        wal_dir = Path(self.cluster.data) / "pg_wal"
        wal = sum(_size(path) for path in wal_dir.iterdir() if path.is_file())
        with psycopg.connect(self.url) as conn:
            db = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return _mib(wal), _mib(db)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mib(n: float) -> float:
    return round(n / 1048576, 2)


def soak(backend: str, url: str, directory: Path, args, cluster=None) -> list[dict]:
    port = free_port()
    config = write_config(directory, url, args.workers, port, args.retention)
    samples: list[dict] = []
    with connect(config=str(config)) as q:
        started = time.perf_counter()
        top_up(q, args.jobs)
        print(f"{backend}: enqueued {args.jobs} jobs in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        supervisor = Supervisor(config, 0)
        process = psutil.Process(supervisor.proc.pid)
        sizes = Sizes(url, directory, cluster)
        try:
            begin = time.monotonic()
            last, last_at, cpu = scrape(port), time.monotonic(), process.cpu_times()
            while time.monotonic() - begin < args.minutes * 60:
                time.sleep(max(0.0, args.every - (time.monotonic() - last_at)))
                numbers, now, cpu_now = scrape(port), time.monotonic(), process.cpu_times()
                seconds = now - last_at
                exchanges = numbers["exchange_count"] - last["exchange_count"]
                counts = q.counts().get("default", {})
                wal, db = sizes.read()
                sample = {
                    "t": round(now - begin, 1),
                    "rss_mib": _mib(process.memory_info().rss),
                    "fds": len(os.listdir(f"/proc/{process.pid}/fd")),
                    "cpu_percent": round(100 * (sum(cpu_now[:2]) - sum(cpu[:2])) / seconds, 1),
                    "exchange_ms": round(1000 * (numbers["exchange_sum"] - last["exchange_sum"])
                                         / exchanges, 3) if exchanges else None,
                    "drain_jobs_per_s": round((numbers["succeeded"] - last["succeeded"]) / seconds),
                    "pending": counts.get("pending", 0),
                    "ended": counts.get("succeeded", 0),
                    "wal_mib": wal, "db_mib": db,
                }
                samples.append(sample)
                print(" ".join(f"{k}={v}" for k, v in sample.items()), file=sys.stderr)
                last, last_at, cpu = numbers, now, cpu_now
                sample["topped_up"] = top_up(q, args.jobs)
        except KeyboardInterrupt:
            print(f"{backend}: interrupted; keeping the {len(samples)} samples", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor's stop is not to be cut short
            supervisor.stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return samples


def deciles(samples: list[dict]) -> dict:
    """Per series: the mean of its first and last tenth (after WARMUP_S), and their ratio."""
    samples = [s for s in samples if s["t"] >= WARMUP_S] or samples
    tenth = max(1, len(samples) // 10)
    out = {}
    for key in SERIES:
        values = [s[key] for s in samples if s.get(key) is not None]
        if len(values) < 2:
            continue
        first = sum(values[:tenth]) / len(values[:tenth])
        last = sum(values[-tenth:]) / len(values[-tenth:])
        ratio = 1.0 if first == last else (last / first if first else float("inf"))
        out[key] = {"first": round(first, 3), "last": round(last, 3), "ratio": round(ratio, 3),
                    "flat": None if key in TABLE else abs(ratio - 1) <= FLAT}
    return out


def summary(title: str, samples: list[dict]) -> dict:
    result = deciles(samples)
    print(title)
    for key, row in result.items():
        label, unit = SERIES[key]
        verdict = {None: "(the table)", True: "flat", False: "NOT flat"}[row["flat"]]
        print(f"  {label + ' (' + unit + ')':<44} first {row['first']:>12.3f}  last {row['last']:>12.3f}"
              f"  x{row['ratio']:<7.3f} {verdict}")
    return result


def plot(document: dict, png: Path) -> bool:
    """The samples as a grid of charts; False when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = document["samples"]
    keys = [key for key in SERIES if any(s.get(key) is not None for s in samples)]
    columns = 3
    rows = (len(keys) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows), squeeze=False)
    minutes = [s["t"] / 60 for s in samples]
    for ax, key in zip(axes.flat, keys):
        label, unit = SERIES[key]
        ax.plot(minutes, [s.get(key) for s in samples], linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("minutes")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    figure.suptitle(f"jobrt soak, {document['backend']}: {document['jobs']:,} jobs of backlog, "
                    f"{document['workers']} workers, {document['minutes']} min")
    figure.tight_layout()
    figure.savefig(png, dpi=90)
    plt.close(figure)
    return True


def write(document: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"soak-{document['backend']}"
    Path(f"{stem}.json").write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    if plot(document, Path(f"{stem}.png")):
        print(f"wrote {stem}.json and {stem}.png")
    else:
        print(f"wrote {stem}.json; matplotlib is not installed here, so no plot: install it "
              f"(benchmarks/requirements-peers.txt has it), then: "
              f"python3 benchmarks/soak.py --plot-only {stem}.json")


def run(backend: str, url: str, directory: Path, args, cluster=None) -> None:
    samples = soak(backend, url, directory, args, cluster)
    document = {"backend": backend, "jobs": args.jobs, "workers": args.workers,
                "minutes": args.minutes, "every": args.every, "retention": args.retention,
                "samples": samples}
    document["deciles"] = summary(f"jobrt soak, {backend}: {len(samples)} samples", samples)
    write(document, Path(args.out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="the backlog, held steady")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--retention", type=float,
                        help="[storage] retention, seconds (default: jobrt's, 7 days: every ended job is kept)")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL cluster instead")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    parser.add_argument("--plot-only", metavar="JSON", help="draw the PNG of an earlier run's JSON")
    args = parser.parse_args()
    if args.plot_only:
        document = orjson.loads(Path(args.plot_only).read_bytes())
        png = Path(args.plot_only).with_suffix(".png")
        print(f"wrote {png}" if plot(document, png) else "matplotlib is not installed")
        return
    if not args.postgres:
        with tempfile.TemporaryDirectory(prefix="jobrt-soak-") as tmp:
            run("sqlite", "sqlite:///soak.db", Path(tmp), args)
        return
    from tests.pgcluster import Cluster

    cluster = Cluster(durable=True)
    try:
        with tempfile.TemporaryDirectory(prefix="jobrt-soak-") as tmp:
            run("postgres", cluster.create_database(), Path(tmp), args, cluster)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
