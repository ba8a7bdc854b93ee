"""The browsing verbs in the PostgreSQL backend (migration 14), as in the SQLite backend
(sqlite_browse): keyset pages of jobs, one index each, and the per-minute aggregates."""

from __future__ import annotations

import math

from runtime.numbers import INT_MAX
from runtime.storage.base import decode_record
from runtime.storage.browse import (
    PAGE_MAX, MinuteRow, MinuteSeries, by_hour, check_by, page_of, reads_hours,
)
from runtime.storage.pgschema import SQL

# The hourly table's statements: the minute table's, on jobrt_job_hours.
HOURS = {name: SQL[name].replace("jobrt_job_minutes", "jobrt_job_hours")
         for name in ("record_minutes", "minute_series_queue", "minute_series_name",
                      "prune_minutes")}


class PostgresBrowseVerbs:
    """Mixed into PostgresStorage: uses its SQL, _read, _write, _change and _record."""

    def jobs_page(self, *, state=None, queue=None, name=None, batch_id=None, before=None,
                  limit=50, tag=None):
        query, params = page_of(state, queue, name, batch_id, before, limit, tag)
        found = self._read("listing jobs", self.SQL[query], params, dicts=True)
        return self._with_tags([decode_record(row) for row in found])

    def batches_page(self, before=None, limit=50):
        found = self._read("listing batches", self.SQL["batches_page"],
                           {"before": INT_MAX if before is None else before,
                            "limit": max(0, min(limit, PAGE_MAX))}, dicts=True)
        return [self._record(row) for row in found]

    def record_minutes(self, rows):
        rows = list(rows)
        if not rows:
            return

        def params(rows):
            return {field: [getattr(row, field) for row in rows] for field in MinuteRow._fields}

        def work(conn):
            conn.execute(self.SQL["record_minutes"], params(rows))
            conn.execute(HOURS["record_minutes"], params(by_hour(rows)))
            return lambda: None
        self._write("writing per-minute job counts", work)

    def minute_series(self, since, bucket, by):
        check_by(by)
        since = math.ceil(since)
        sql = (HOURS if reads_hours(since, bucket) else self.SQL)[f"minute_series_{by}"]
        found = self._read("reading per-minute job counts", sql,
                           {"since": since, "bucket": int(bucket)})
        return sorted(MinuteSeries(*row) for row in found)

    def prune_minutes(self, before):
        def work(conn):
            conn.execute(HOURS["prune_minutes"], {"before": math.ceil(before)})
            cursor = conn.execute(self.SQL["prune_minutes"], {"before": math.ceil(before)})
            return lambda: max(cursor.rowcount, 0)
        return self._write("pruning per-minute job counts", work)
