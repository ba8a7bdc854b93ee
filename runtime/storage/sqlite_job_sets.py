"""The job-set verbs (runtime.storage.job_sets) of the SQLite backend: the ids go in as
one JSON array, and each is a primary-key probe."""

from __future__ import annotations

import time

import orjson

from runtime.storage import sqlite_batches, sqlite_gates
from runtime.storage.base import PENDING
from runtime.storage.job_sets import unique_ids
from runtime.storage.sqlite_file import SQL


class SqliteJobSetVerbs:
    """Mixed into SqliteStorage: uses its _read and _write."""

    def count_states(self, job_ids) -> dict[str, int]:
        rows = self._read("counting jobs by state", SQL["count_states"],
                          (orjson.dumps(unique_ids(job_ids)),))
        return {state: n for state, n in rows}

    def delete_jobs(self, job_ids, now: float | None = None) -> int:
        ids = orjson.dumps(unique_ids(job_ids))

        def work(conn, tally):
            jobs = conn.execute(SQL["delete_jobs"], (ids,)).fetchall()
            for state, queue, name, at, *_keys in jobs:
                tally.add(state, queue, name, at, -1)
            at = time.time() if now is None else now
            sqlite_gates.regate(conn, [job[4:] for job in jobs if job[0] == PENDING], at)
            sqlite_batches.work_due(conn, tally, at)
            return len(jobs)
        return self._write("deleting jobs", work)
