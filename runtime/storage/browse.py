"""What storage keeps for the dashboard (runtime.dashboard) beyond the job rows: the verbs
that page through jobs and batches by index, and the per-minute aggregate rows that the
supervisors write from their own counters, for charts that never scan the jobs."""

from __future__ import annotations

from typing import NamedTuple

from runtime.numbers import INT_MAX

PAGE_MAX = 500  # rows one page holds at most, whatever a caller asks
LISTED_STATES = ("running", "failed", "cancelled")  # states with an index of their own


class MinuteRow(NamedTuple):
    """What the jobs of one queue and name did in one minute, as one supervisor counted
    them since its last write (storage adds up the rows of every supervisor and write).

    `minute` is the minute's start, whole epoch seconds divisible by 60. `runs` counts the
    runs that ended (any outcome), `succeeded` and `failed` (failed for good) some of them;
    `runtime_sum` / `runtime_max` are over those runs (seconds); `waits`, `wait_sum` and
    `wait_max` are over the jobs claimed in that minute: seconds from their available_at to
    their claim."""

    minute: int
    queue: str
    name: str
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    runtime_sum: float = 0.0
    runtime_max: float = 0.0
    waits: int = 0
    wait_sum: float = 0.0
    wait_max: float = 0.0


class MinuteSeries(NamedTuple):
    """MinuteRows added up into buckets of `bucket` seconds, by queue or by name: one per
    (start of its bucket, key) that has any."""

    at: int
    key: str
    runs: int
    succeeded: int
    failed: int
    runtime_sum: float
    runtime_max: float
    waits: int
    wait_sum: float
    wait_max: float


def add_minutes(rows) -> dict:
    """MinuteRows added up by (minute, queue, name), sums summed and maxima taken (the
    memory model of what record_minutes keeps)."""
    merged: dict = {}
    for row in rows:
        key = (row.minute, row.queue, row.name)
        old = merged.get(key)
        merged[key] = row if old is None else old._replace(
            runs=old.runs + row.runs, succeeded=old.succeeded + row.succeeded,
            failed=old.failed + row.failed, runtime_sum=old.runtime_sum + row.runtime_sum,
            runtime_max=max(old.runtime_max, row.runtime_max), waits=old.waits + row.waits,
            wait_sum=old.wait_sum + row.wait_sum, wait_max=max(old.wait_max, row.wait_max))
    return merged


HOUR = 3600


def by_hour(rows) -> list:
    """MinuteRows added up per hour (`minute`: the hour's start): the rows the SQL backends
    also keep, so that a chart of whole hours reads a sixtieth of the rows."""
    return list(add_minutes(row._replace(minute=row.minute - row.minute % HOUR)
                            for row in rows).values())


def reads_hours(since: float, bucket: int) -> bool:
    """Whether a series from `since` in buckets of `bucket` s is made of whole hours."""
    return bucket % HOUR == 0 and since % HOUR == 0


def bucket_rows(rows, since: float, bucket: int, by: str) -> list[MinuteSeries]:
    """MinuteRows (from `since` on) grouped into MinuteSeries, ordered by (at, key)."""
    out: dict = {}
    for row in rows:
        if row.minute < since:
            continue
        at = row.minute - row.minute % bucket
        key = (at, row.queue if by == "queue" else row.name)
        old = out.get(key)
        values = (row.runs, row.succeeded, row.failed, row.runtime_sum, row.runtime_max,
                  row.waits, row.wait_sum, row.wait_max)
        if old is None:
            out[key] = MinuteSeries(*key, *values)
        else:
            out[key] = old._replace(
                runs=old.runs + row.runs, succeeded=old.succeeded + row.succeeded,
                failed=old.failed + row.failed, runtime_sum=old.runtime_sum + row.runtime_sum,
                runtime_max=max(old.runtime_max, row.runtime_max), waits=old.waits + row.waits,
                wait_sum=old.wait_sum + row.wait_sum, wait_max=max(old.wait_max, row.wait_max))
    return [out[key] for key in sorted(out)]


def page_query(state, queue, name, batch, tag=None) -> str:
    """The name of the statement that walks the most selective index for these filters
    (each backend's .sql file has one of that name)."""
    if tag is not None:
        return "jobs_page_tag"
    if state in ("failed", "cancelled"):
        return "jobs_page_listed"
    if state == "running":
        return "jobs_page_running"
    if batch is not None:
        return "jobs_page_batch"
    if queue is not None:
        return "jobs_page_queue"
    if name is not None:
        return "jobs_page_name"
    return "jobs_page_all"


def page_of(state, queue, name, batch_id, before, limit, tag=None) -> tuple[str, dict]:
    """jobs_page's statement name and its named parameters, for either SQL backend."""
    batch = None if batch_id is None else str(batch_id)
    return page_query(state, queue, name, batch, tag), {
        "state": state, "queue": queue, "name": name, "batch": batch, "tag": tag,
        "before": INT_MAX if before is None else before, "limit": max(0, min(limit, PAGE_MAX))}


def check_by(by: str) -> None:
    if by not in ("queue", "name"):
        raise ValueError(f"minute_series groups by 'queue' or 'name', not {by!r}")


class BrowseVerbs:
    """The storage contract's browsing verbs (runtime.storage.base.Storage has them)."""

    # -- pages of jobs and batches (the dashboard's lists) -------------------------
    def jobs_page(self, *, state: str | None = None, queue: str | None = None,
                  name: str | None = None, batch_id: int | None = None,
                  before: int | None = None, limit: int = 50, tag: str | None = None) -> list:
        """Up to `limit` (at most PAGE_MAX) JobRecords matching every filter given, newest
        (highest id) first, all with id < `before` when given: the next page starts
        before the last id of this one (keyset pagination, never OFFSET).

        Each query walks an index in id order and stops after `limit` matches: the
        running, failed and cancelled jobs have indexes of their own (LISTED_STATES, which
        win over the others), then a batch's members, a queue's jobs and a name's jobs;
        pending and succeeded jobs alone walk the table's id order (pending jobs are
        mostly the newest, succeeded ones mostly all). A rare state within a common
        filter walks that filter's index until it found a page. A `tag` walks the index of
        that tag's jobs (the job_tags rows), whatever the other filters. Records carry
        their tags."""
        raise NotImplementedError

    def batches_page(self, before: int | None = None, limit: int = 50) -> list:
        """Up to `limit` (at most PAGE_MAX) BatchRecords, newest first, with id < `before`
        when given (keyset pagination)."""
        raise NotImplementedError

    # -- per-minute aggregates (the dashboard's charts) ------------------------------
    def record_minutes(self, rows: list) -> None:
        """Add MinuteRows in one transaction: each adds to the row of its (minute, queue,
        name), made when missing: counts and sums are summed, maxima taken. A supervisor
        writes what it counted since its last write, so any number of supervisors and
        writes add up to the whole."""
        raise NotImplementedError

    def minute_series(self, since: float, bucket: int, by: str) -> list:
        """The minute rows from `since` (epoch seconds) on, added up per `bucket` seconds
        (a multiple of 60) and per queue (by="queue") or job name (by="name"):
        MinuteSeries ordered by (at, key). Reads the aggregate table only, by its minute
        index, or, for whole hours from a whole hour, the hourly one that record_minutes
        keeps too: a week of a few queues is some thousands of rows, whatever the jobs."""
        raise NotImplementedError

    def prune_minutes(self, before: float) -> int:
        """Delete the minute rows (and hourly ones) older than `before`; how many minute
        rows."""
        raise NotImplementedError
