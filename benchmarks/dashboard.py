"""The dashboard's server time per page and API call at a million jobs (run by hand).

    python benchmarks/dashboard.py [--url sqlite:////tmp/dash-bench.db | postgresql://...]
                                   [--jobs 1000000] [--failed 10000] [--rounds 30] [--explain]

Fills storage through its own verbs (enqueue, exchange) with --jobs jobs in mixed states
(about 70% succeeded, 20% pending of which a tenth delayed, --failed failed, some
cancelled, a few running), 200 batches, and a week of per-minute rows for 3 queues and 6
job names; then times each page and its /api/ twin in-process (starlette's TestClient:
routing, storage, rendering; no network), --rounds times each, and prints p50 and p95 in
ms. A filled database is reused when its job count matches (delete it to start over).
--explain prints the query plans of the list queries (SQLite: EXPLAIN QUERY PLAN;
PostgreSQL: EXPLAIN). Not measured here: the supervisor's drain while a dashboard refreshes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from runtime.config.load import config_from_dict
from runtime.storage import NewJob, Outcome, open_storage
from runtime.storage.browse import MinuteRow
from runtime.storage.workflows import NewBatch

QUEUES = ("default", "emails", "reports")
NAMES = ("jobs.mail:send", "jobs.mail:digest", "jobs.reports:build", "jobs.reports:export",
         "jobs.sync:pull", "jobs.sync:push")
CHUNK = 5000


def fill(storage, jobs: int, failed: int) -> None:
    now = time.time()
    payload = orjson.dumps([["someone@example.com", 42], {}])
    made = 0
    started = time.monotonic()
    while made < jobs:
        n = min(CHUNK, jobs - made)
        storage.enqueue([NewJob(QUEUES[i % 3], NAMES[i % 6], payload,
                                now + (3600 if i % 50 == 0 else -60)) for i in range(made, made + n)])
        made += n
    for b in range(200):
        storage.create_batch(NewBatch("default", name=f"import-{b}"),
                             [NewJob("default", NAMES[0], payload, now - 60) for _ in range(20)], now)
    print(f"enqueued {jobs} jobs in {time.monotonic() - started:.1f} s", flush=True)
    to_settle = int(jobs * 0.8)
    settled = 0
    every_failed = max(1, to_settle // max(1, failed))
    while settled < to_settle:
        claimed = {q: storage.claim("bench", [q], CHUNK // 3, now + 3600, now) for q in QUEUES}
        outcomes = []
        for jobs_of_queue in claimed.values():
            for job in jobs_of_queue:
                settled += 1
                state = ("failed" if settled % every_failed == 0 else
                         "cancelled" if settled % 997 == 0 else "succeeded")
                outcomes.append(Outcome(job.id, job.attempt, state, now - 30, result=b"true",
                                        error="RuntimeError: boom" if state == "failed" else None,
                                        traceback="Traceback ..." if state == "failed" else None,
                                        queue=job.queue, name=job.name))
        if not outcomes:
            break
        storage.settle("bench", outcomes)
    storage.claim("bench", ["default"], 8, now + 3600, now)  # a few running
    minutes = int(now // 60) * 60
    rows = [MinuteRow(minutes - 60 * m, QUEUES[n % 3], NAMES[n], 40 + m % 7, 39, 1, 12.0, 0.9,
                      40, 2.0, 0.4) for m in range(7 * 24 * 60) for n in range(6)]
    for i in range(0, len(rows), 20000):
        storage.record_minutes(rows[i:i + 20000])
    print(f"filled in {time.monotonic() - started:.1f} s", flush=True)


def paths(storage) -> list[str]:
    failed = storage.jobs_page(state="failed", limit=1)[0].id
    batch = storage.batches_page(limit=1)[0].id
    return ["/", "/jobs", "/jobs?state=pending", "/jobs?state=running", "/jobs?state=failed",
            "/jobs?state=succeeded", "/jobs?state=cancelled", "/jobs?queue=emails",
            "/jobs?name=jobs.sync:push", f"/jobs?batch={batch}", "/jobs?state=failed&queue=emails",
            f"/jobs?before={failed}", f"/jobs/{failed}", "/failed", "/batches", f"/batches/{batch}",
            "/schedules", "/metrics-charts", "/metrics-charts?range=day",
            "/metrics-charts?range=week"]


def explain(storage) -> None:
    from runtime.storage.browse import page_query

    cases = [dict(state=s) for s in (None, "pending", "running", "failed", "succeeded")] + [
        dict(queue="emails"), dict(name="jobs.sync:push"), dict(batch="1"),
        dict(state="failed", queue="emails")]
    for case in cases:
        params = {"state": None, "queue": None, "name": None, "batch": None, "before": 2**62,
                  "limit": 51, **case}
        name = page_query(params["state"], params["queue"], params["name"], params["batch"])
        if hasattr(storage, "SQL"):
            rows = storage._read("explaining", "EXPLAIN " + storage.SQL[name], params)
            plan = " | ".join(r[0].strip() for r in rows)
        else:
            from runtime.storage.sqlite_file import SQL
            rows = storage.conn.execute("EXPLAIN QUERY PLAN " + SQL[name], params).fetchall()
            plan = " | ".join(r[-1] for r in rows)
        print(f"{str(case):<42} {name:<18} {plan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="sqlite:////tmp/dash-bench.db")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    import warnings

    with warnings.catch_warnings():  # starlette 1.x prefers httpx2; httpx does the same here
        warnings.simplefilter("ignore", DeprecationWarning)
        from starlette.testclient import TestClient

    from runtime.dashboard.app import create_app

    storage = open_storage(args.url, role="supervisor")
    have = sum(sum(c.values()) for c in storage.counts(time.time()).values())
    if have < args.jobs:
        fill(storage, args.jobs, args.failed)
    if args.explain:
        explain(storage)
    cfg = config_from_dict({"storage": {"url": args.url}})
    # opened by the app at start-up, in its event loop's thread (a SQLite connection stays in its thread)
    app = create_app(cfg, storage_factory=lambda: open_storage(args.url, role="client"))
    print(f"{'path':<36} {'p50 ms':>8} {'p95 ms':>8}   (and its /api/ twin)")
    with TestClient(app) as client:
        for path in paths(storage):
            for prefix in ("", "/api"):
                url = ("/api/overview" if path == "/" else "/api" + path) if prefix else path
                times = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (url, response.status_code)
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(f"{url:<36} {statistics.median(times):8.1f} {p95:8.1f}", flush=True)


if __name__ == "__main__":
    main()
