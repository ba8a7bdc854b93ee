"""Enqueue on SQLite against its bounds, in one run, on one filesystem:

    python3 benchmarks/enqueue.py [--jobs 100000] [--one 2000] [--repeat 5] [--json-out FILE]

    fsync bounds     a 4 KiB write then fdatasync, in a loop: appended (the file grows),
                     or over a block already written (the least a durable commit costs)
    sqlite one       raw sqlite3: one INSERT of a job-sized row + COMMIT per call, WAL,
                     synchronous=FULL (no job model, no validation)
    jobrt one        Queue.enqueue(name, arg): a durable commit each
    jobrt many       Queue.enqueue_many of --jobs (name, args) pairs in one call
    sqlite many      raw sqlite3: the same rows by executemany (the usual way to insert
                     many) in one transaction, into a copy of jobrt's tables, indexes and
                     triggers

Rates are the median of --repeat runs (a fresh database each), ratios the median of
each run's own. Prints a table, then one JSON document.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime import connect  # noqa: E402

NAME = "jobs.examples:add"


def fsync_bound(directory: Path, count: int, append: bool) -> float:
    """4 KiB writes, each followed by fdatasync, per second: appended (the file grows, so
    its size is flushed too, as while a WAL grows), or over a block already written (as
    once the WAL restarts after a checkpoint)."""
    path = directory / "fsync.bin"
    block = b"\1" * 4096
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND * append, 0o600)
    try:
        if not append:
            os.write(fd, bytes(4096 * 256))
            os.fsync(fd)
        started = time.perf_counter()
        for n in range(count):
            if append:
                os.write(fd, block)
            else:
                os.pwrite(fd, block, 4096 * (n % 256))
            os.fdatasync(fd)
        return count / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


def sqlite_one(directory: Path, count: int) -> float:
    """Raw sqlite3 in WAL mode, synchronous=FULL: one short row per committed transaction."""
    path = directory / "raw.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT, payload BLOB, "
                 "queue TEXT, state TEXT, run_at REAL)")
    conn.execute("CREATE INDEX due ON jobs (queue, state, run_at)")
    payload = orjson.dumps([[1, 2], {}])
    started = time.perf_counter()
    for _ in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO jobs (name, payload, queue, state, run_at) VALUES "
                     "(?, ?, 'default', 'pending', ?)", (NAME, payload, time.time()))
        conn.execute("COMMIT")
    rate = count / (time.perf_counter() - started)
    conn.close()
    return rate


def jobrt_one(directory: Path, count: int) -> float:
    with connect(f"sqlite:///{directory / 'one.db'}") as q:
        q.enqueue(NAME, 0, 0)  # the schema made, statements prepared
        started = time.perf_counter()
        for n in range(count):
            q.enqueue(NAME, n, 1)
        return count / (time.perf_counter() - started)


def jobrt_many(directory: Path, count: int) -> tuple[float, Path]:
    path = directory / "many.db"
    with connect(f"sqlite:///{path}") as q:
        q.enqueue(NAME, 0, 0)
        jobs = [(NAME, (n, 1)) for n in range(count)]
        started = time.perf_counter()
        q.enqueue_many(jobs)
        return count / (time.perf_counter() - started), path


def sqlite_many(template: Path, directory: Path, count: int) -> float:
    """executemany into a copy of jobrt's schema (every table and index), one transaction:
    the rows as jobrt stores them, taken from the database jobrt_many filled."""
    source = sqlite3.connect(template)
    schema = [sql for (sql,) in source.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "ORDER BY type = 'index'")]
    columns = [row[1] for row in source.execute("PRAGMA table_info(jobs)") if row[1] != "id"]
    rows = source.execute(f"SELECT {', '.join(columns)} FROM jobs LIMIT ?", (count,)).fetchall()
    source.close()
    conn = sqlite3.connect(directory / "rawmany.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for sql in schema:
        conn.execute(sql)
    insert = f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert, rows)
    conn.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - started)
    conn.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs of one enqueue_many")
    parser.add_argument("--one", type=int, default=2000, help="jobs enqueued one by one")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", help="where the databases go (default: a temporary directory "
                        "under $TMPDIR); the filesystem decides the fsync bound")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="jobrt-enqueue-", dir=args.dir) as scratch:
            directory = Path(scratch)
            run = {"fsync_append_per_s": fsync_bound(directory, args.one, append=True),
                   "fsync_overwrite_per_s": fsync_bound(directory, args.one, append=False),
                   "sqlite_one_per_s": sqlite_one(directory, args.one),
                   "jobrt_one_per_s": jobrt_one(directory, args.one)}
            run["jobrt_many_per_s"], filled = jobrt_many(directory, args.jobs)
            run["sqlite_many_per_s"] = sqlite_many(filled, directory, args.jobs)
            runs.append(run)
    # Rates: the median of the runs. Ratios: the median of each run's own ratio (the disk's
    # speed here moves by half between runs; within a run, less).
    result = {key: round(statistics.median(run[key] for run in runs)) for key in runs[0]}
    for name, top, bottom in (("one_vs_fsync_append", "jobrt_one", "fsync_append"),
                              ("one_vs_fsync_overwrite", "jobrt_one", "fsync_overwrite"),
                              ("sqlite_one_vs_fsync_overwrite", "sqlite_one", "fsync_overwrite"),
                              ("one_vs_sqlite_one", "jobrt_one", "sqlite_one"),
                              ("many_vs_sqlite_many", "jobrt_many", "sqlite_many")):
        result[name] = round(statistics.median(run[top + "_per_s"] / run[bottom + "_per_s"]
                                               for run in runs), 3)
    result.update({"jobs": args.jobs, "one": args.one, "repeat": args.repeat})
    for key, value in result.items():
        print(f"{key:24} {value:>12}")
    print(orjson.dumps(result).decode())
    if args.json_out:
        Path(args.json_out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
