"""The operators' verbs (runtime.storage.ops) in the SQLite backend (migration 17): paused
queues, restart requests, pruning the failed-jobs store by age; and job tags, written by
an enqueue of tagged jobs in its own transaction and read for records and pages."""

from __future__ import annotations

import sqlite3

import orjson

from runtime.storage.ops import Controls, made_by
from runtime.storage.sqlite_file import SQL


def tagging(insert, jobs: list):
    """`insert` (sqlite_insert.insert_bulk or insert_each) that also writes the tags of the
    jobs it made: a unique job whose key a live job holds made none (its id is older)."""
    def work(conn: sqlite3.Connection, tally, rows: list) -> list[int]:
        # AUTOINCREMENT ids only grow, and nobody else writes inside BEGIN IMMEDIATE.
        before = conn.execute(SQL["max_id"]).fetchone()[0]
        ids = insert(conn, tally, rows)
        write_tags(conn, ids, jobs, before)
        return ids
    return work


def write_tags(conn: sqlite3.Connection, ids: list[int], jobs: list, before: int) -> None:
    """The tags of `jobs`, given `ids`, that this transaction made: their ids are above
    `before`, the largest id before it (a unique job whose key a live job held made none)."""
    conn.executemany(SQL["insert_tag"], [(tag, job_id) for job_id, job in made_by(ids, jobs)
                                         if job_id > before for tag in job.tags])


class SqliteOpsVerbs:
    """Mixed into SqliteStorage: uses its _cursor, _read and _write."""

    def pause_queues(self, queues, now):
        def work(conn, tally):
            return sorted(queue for queue in set(queues)
                          if conn.execute(SQL["pause_queue"], (queue, now)).rowcount > 0)
        return self._write("pausing queues", work)

    def resume_queues(self, queues):
        def work(conn, tally):
            return sorted(queue for queue in set(queues)
                          if conn.execute(SQL["resume_queue"], (queue,)).rowcount > 0)
        return self._write("resuming queues", work)

    def paused_queues(self):
        return dict(self._read("reading paused queues", SQL["paused_queues"]))

    def request_restart(self, now):
        return self._write("requesting a restart",
                           lambda conn, tally: conn.execute(SQL["request_restart"], (now,)).fetchone()[0])

    def controls(self):
        return Controls.from_rows(self._read("reading paused queues and restart requests", SQL["controls"]))

    def prune_failed(self, before, limit):
        if limit <= 0:
            return 0

        def work(conn, tally):
            gone = conn.execute(SQL["prune_failed"], (before, limit)).fetchall()
            for state, queue, name in gone:
                tally.add(state, queue, name, None, -1)
            return len(gone)
        return self._write("pruning failed jobs", work)

    def _with_tags(self, records: list) -> list:
        """The records with their tags (one indexed read for them all)."""
        if records:
            tags: dict[int, list] = {}
            for job_id, tag in self._read("reading job tags", SQL["tags_of"],
                                          (orjson.dumps([r.id for r in records]).decode(),)):
                tags.setdefault(job_id, []).append(tag)
            for record in records:
                record.tags = tags.get(record.id, [])
        return records
