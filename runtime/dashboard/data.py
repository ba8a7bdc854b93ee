"""What each dashboard page shows, as plain dicts: the HTML pages render them, the /api/
twins return them as JSON. Every read is one of storage's cheap verbs: counters, keyset
pages by index, the per-minute aggregate rows; nothing here scans the jobs table.

Query strings are checked here (`BadQuery`, a 400 page); a job or batch that does not
exist is `Missing` (a 404 page).
"""

from __future__ import annotations

import time

from runtime.cli import health
from runtime.numbers import INT_MAX
from runtime.options import is_queue_name
from runtime.storage import STATES
from runtime.tags import MAX_LENGTH, is_tag

PAGE = 50  # rows per list page
RANGES = {"hour": (3600, 60), "day": (86400, 900), "week": (7 * 86400, 3 * 3600)}  # span, bucket
HIDDEN = "(hidden: [dashboard] show_args = false)"


class BadQuery(ValueError):
    """A query string the dashboard cannot use: the message says which parameter and why."""


class Missing(LookupError):
    """No such job or batch (never made, or pruned since)."""


# -- query strings -------------------------------------------------------------------
def whole(text: str | None, what: str, low: int = 1, high: int = INT_MAX) -> int | None:
    """A whole number from a query string, or None when absent or empty."""
    if text is None or text == "":
        return None
    # isascii: str.isdigit() also takes "²" and other digits int() refuses
    if len(text) > 20 or not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadQuery(f"{what} must be a whole number from {low} to {high}, got {text[:40]!r}")
    return int(text)


def jobs_filters(params) -> dict:
    """The filters of /jobs from its query string: state, queue, name, batch, tag, before, q."""
    state = params.get("state") or None
    if state is not None and state not in STATES:
        raise BadQuery(f"state must be one of {', '.join(STATES)}, got {state[:40]!r}")
    queue = params.get("queue") or None
    if queue is not None and not is_queue_name(queue):
        raise BadQuery(f"queue must be a queue name, got {queue[:40]!r}")
    name = params.get("name") or None
    if name is not None and (len(name) > 200 or not name.isprintable()):
        raise BadQuery("name must be a job name (printable, at most 200 characters)")
    tag = params.get("tag") or None
    if tag is not None and not is_tag(tag):
        raise BadQuery(f"tag must be a tag (printable, at most {MAX_LENGTH} characters), got {tag[:40]!r}")
    found = {"state": state, "queue": queue, "name": name, "tag": tag,
             "batch": whole(params.get("batch"), "batch"),
             "before": whole(params.get("before"), "before"), "q": None}
    q = (params.get("q") or "").strip()
    if q:  # the search box: a job id, "batch N", or a job name
        words = q.split()
        if len(words) == 2 and words[0].lower() == "batch":
            found["batch"] = whole(words[1], "the batch id in q")
        elif q.lstrip("#").isdigit():
            found["q"] = whole(q.lstrip("#"), "the job id in q")
        else:
            found["name"] = q if len(q) <= 200 and q.isprintable() else None
    return found


# -- records --------------------------------------------------------------------------
def job_dict(record, show_args: bool, full: bool = False) -> dict:
    data = record.to_dict()
    if not show_args:
        data.update(args=HIDDEN, kwargs=HIDDEN, result=HIDDEN if data["result"] is not None else None)
    lines = (record.error or "").strip().splitlines()
    data["error_line"] = lines[0][:200] if lines else None  # the list's error summary
    if not full:
        data.pop("traceback")
    return data


def overview(storage, cfg, now: float | None = None) -> dict:
    """Counts per queue, throughput, supervisors, workers per pool and queue, health."""
    now = time.time() if now is None else now
    counts = storage.counts(now)
    rows = health.live_supervisors(storage, now)
    supervisors, workers = health.live_workers(storage, now, rows)
    hour = storage.minute_series(now - 3600, 3600, "queue")
    # jobs per minute: the runs counted in the last five minutes (the current one partly)
    since = (int(now) // 60 - 5) * 60
    recent = sum(s.runs for s in storage.minute_series(since, 60, "queue"))
    runs = {s.key: s.runs for s in hour}
    runtime = {s.key: (s.runtime_sum / s.runs if s.runs else None) for s in hour}
    serving = _workers_per_queue(supervisors, workers)
    paused = storage.paused_queues()
    queues = []
    for name in sorted(set(counts) | set(serving) | set(paused)):
        c = counts.get(name, {})
        n, average = serving.get(name, 0), runtime.get(name)
        wait = None if not n or average is None else c.get("pending", 0) * average / n
        queues.append({"queue": name, "pending": c.get("pending", 0), "delayed": c.get("delayed", 0),
                       "running": c.get("running", 0), "failed": c.get("failed", 0),
                       "succeeded": c.get("succeeded", 0), "workers": n,
                       "runs_last_hour": runs.get(name, 0), "average_runtime": average,
                       "wait": wait, "paused": name in paused})
    report = health.evaluate(cfg.health, health.gather(storage, now))
    pools: dict = {}
    for worker in workers:
        pool = pools.setdefault(worker["pool"], {"pool": worker["pool"], "workers": 0, "busy": 0})
        pool["workers"] += 1
        pool["busy"] += worker["state"] == "busy"
    for supervisor in supervisors:
        for name, pool in (supervisor.get("pools") or {}).items():
            entry = pools.setdefault(name, {"pool": name, "workers": 0, "busy": 0})
            entry.update(balance=pool.get("balance"), queues=pool.get("queues"),
                         targets=pool.get("targets"))
    return {
        "now": now,
        "jobs_per_minute": round(recent * 60 / max(60.0, now - since), 1),
        "jobs_last_hour": sum(runs.values()),
        "failed": sum(c.get("failed", 0) for c in counts.values()),
        "failed_retention_days": round(cfg.retention / 86400, 1) if cfg.retention else None,
        "queues": queues, "supervisors": supervisors, "workers": workers,
        "pools": sorted(pools.values(), key=lambda p: p["pool"]),
        "health": {"status": report.status, "reasons": report.reasons},
        "paused_queues": list(paused),
    }


def _workers_per_queue(supervisors: list, workers: list) -> dict:
    """Live workers serving each queue: a balanced pool's worker serves its one queue, any
    other serves every queue of its pool."""
    pool_queues = {}
    for supervisor in supervisors:
        for name, pool in (supervisor.get("pools") or {}).items():
            pool_queues[(supervisor["owner"], name)] = pool.get("queues") or []
    serving: dict = {}
    for worker in workers:
        queues = [worker["queue"]] if worker.get("queue") else \
            pool_queues.get((worker["supervisor"], worker["pool"]), [])
        for queue in queues:
            serving[queue] = serving.get(queue, 0) + 1
    return serving


def jobs(storage, filters: dict, show_args: bool) -> dict:
    """A page of jobs, newest first, and the cursor of the next page (None: last page)."""
    if filters["q"] is not None:
        record = storage.get(filters["q"])
        found = [record] if record is not None else []
        return {"filters": filters, "jobs": [job_dict(r, show_args) for r in found], "next": None}
    found = storage.jobs_page(state=filters["state"], queue=filters["queue"],
                              name=filters["name"], batch_id=filters["batch"], tag=filters.get("tag"),
                              before=filters["before"], limit=PAGE + 1)
    more = len(found) > PAGE
    found = found[:PAGE]
    return {"filters": filters, "jobs": [job_dict(r, show_args) for r in found],
            "next": found[-1].id if more else None}


def job(storage, job_id: int, show_args: bool) -> dict:
    record = storage.get(job_id)
    if record is None:
        raise Missing(f"no job {job_id} (it may never have existed, or was pruned)")
    data = job_dict(record, show_args, full=True)
    data["batch"] = None
    batch_id = None if record.batch_id is None else str(record.batch_id)
    if batch_id is not None and batch_id.isascii() and batch_id.isdigit():
        batch = storage.batch(int(batch_id))
        data["batch"] = batch.to_dict() if batch is not None else None
    data["chain"] = None
    if record.chain_id is not None:
        chain = storage.chain(record.chain_id)
        data["chain"] = chain.to_dict() if chain is not None else None
    return data


def failed(storage, before: int | None, show_args: bool) -> dict:
    return jobs(storage, {"state": "failed", "queue": None, "name": None, "batch": None,
                          "before": before, "q": None}, show_args)


def batches(storage, before: int | None) -> dict:
    found = storage.batches_page(before=before, limit=PAGE + 1)
    more = len(found) > PAGE
    found = found[:PAGE]
    return {"batches": [b.to_dict() for b in found], "next": found[-1].id if more else None}


def batch(storage, batch_id: int, show_args: bool) -> dict:
    record = storage.batch(batch_id)
    if record is None:
        raise Missing(f"no batch {batch_id} (it may never have existed, or was pruned)")
    failed_members = storage.jobs_page(state="failed", batch_id=batch_id, limit=PAGE)
    return {"batch": record.to_dict(),
            "failed_members": [job_dict(r, show_args) for r in failed_members],
            "members": [job_dict(r, show_args) for r in storage.jobs_page(batch_id=batch_id,
                                                                          limit=PAGE)]}


def schedules(storage, cfg, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    last = storage.last_ticks(list(cfg.schedules))
    found = []
    for name, schedule in cfg.schedules.items():
        tick = last.get(name)
        found.append({"name": name, "job": schedule.job, "expression": schedule.expression,
                      "timezone": schedule.timezone, "overlap": schedule.overlap,
                      "next_run": schedule.next_after(max(now, tick.tick_at) if tick else now),
                      "last_tick": tick.to_dict() if tick else None})
    return {"schedules": found}


def metrics(storage, span: str, now: float | None = None) -> dict:
    """Series for the charts over the last hour, day or week: per queue and per job name,
    each bucket's runs (throughput, per minute), average and max run time, and per queue the
    average wait from available_at to claim."""
    if span not in RANGES:
        raise BadQuery(f"range must be one of {', '.join(RANGES)}, got {span[:40]!r}")
    now = time.time() if now is None else now
    seconds, bucket = RANGES[span]
    start = int(now - seconds) // bucket * bucket
    out = {"range": span, "bucket": bucket, "start": start, "end": now}
    for by in ("queue", "name"):
        series: dict = {}
        for s in storage.minute_series(start, bucket, by):
            entry = series.setdefault(s.key, {"key": s.key, "points": []})
            entry["points"].append({
                "at": s.at, "per_minute": round(s.runs * 60 / bucket, 2), "runs": s.runs,
                "failed": s.failed,
                "runtime": round(s.runtime_sum / s.runs, 4) if s.runs else None,
                "runtime_max": round(s.runtime_max, 4),
                "wait": round(s.wait_sum / s.waits, 4) if s.waits else None})
        out["by_" + by] = [series[key] for key in sorted(series)]
    return out
