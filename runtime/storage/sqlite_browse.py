"""The browsing verbs in the SQLite backend (migration 16): keyset pages of jobs, each query
walking one index chosen by its filters, and the per-minute aggregate table."""

from __future__ import annotations

from runtime.numbers import INT_MAX
from runtime.storage.base import decode_record
from runtime.storage.browse import (
    PAGE_MAX, MinuteSeries, by_hour, check_by, page_of, reads_hours,
)
from runtime.storage.sqlite_batches import record
from runtime.storage.sqlite_file import SQL, rows

# The hourly table's statements: the minute table's, on job_hours.
HOURS = {name: SQL[name].replace("job_minutes", "job_hours")
         for name in ("record_minute", "minute_series_queue", "minute_series_name", "prune_minutes")}


class SqliteBrowseVerbs:
    """Mixed into SqliteStorage: uses its _cursor, _read, _write and conn."""

    def jobs_page(self, *, state=None, queue=None, name=None, batch_id=None, before=None,
                  limit=50, tag=None):
        query, params = page_of(state, queue, name, batch_id, before, limit, tag)
        cursor = self._cursor("listing jobs", SQL[query], params)
        names = [column[0] for column in cursor.description]
        return self._with_tags([decode_record(dict(zip(names, row))) for row in cursor.fetchall()])

    def batches_page(self, before=None, limit=50):
        found = rows(self._cursor("listing batches", SQL["batches_page"],
                                  (INT_MAX if before is None else before,
                                   max(0, min(limit, PAGE_MAX)))))
        return [record(self.conn, row) for row in found]

    def record_minutes(self, minute_rows):
        minute_rows = list(minute_rows)

        def work(conn, tally):
            conn.executemany(SQL["record_minute"], [tuple(row) for row in minute_rows])
            conn.executemany(HOURS["record_minute"], [tuple(row) for row in by_hour(minute_rows)])
        if minute_rows:
            self._write("writing per-minute job counts", work)

    def minute_series(self, since, bucket, by):
        check_by(by)
        sql = (HOURS if reads_hours(since, bucket) else SQL)[f"minute_series_{by}"]
        found = self._read("reading per-minute job counts", sql, (since, int(bucket)))
        return sorted(MinuteSeries(*row) for row in found)

    def prune_minutes(self, before):
        def work(conn, tally):
            conn.execute(HOURS["prune_minutes"], (before,))
            return conn.execute(SQL["prune_minutes"], (before,)).rowcount
        return self._write("pruning per-minute job counts", work)
