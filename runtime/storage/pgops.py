"""The operators' verbs (runtime.storage.ops) in the PostgreSQL backend (migration 15), as
in the SQLite backend (sqlite_ops): paused queues, restart requests, pruning the
failed-jobs store by age, and job tags."""

from __future__ import annotations

from runtime.storage.ops import Controls, made_by
from runtime.storage.pgschema import SQL


def tagging(insert, tagged_jobs: list):
    """`insert` (pginsert.insert_bulk or insert_unique) that also writes the tags of the jobs
    it made. Its ids are built before COMMIT (enqueue confirms first), so the tags are
    written in the enqueue's transaction."""
    def work(conn, sql, jobs, now, channel, where):
        finish = insert(conn, sql, jobs, now, channel, where)

        def ids() -> list[int]:
            made = finish()
            pairs = [(tag, job_id) for job_id, job in made_by(made, tagged_jobs) for tag in job.tags]
            conn.execute(sql["insert_tags"], {"tag": [tag for tag, _ in pairs],
                                              "job_id": [job_id for _, job_id in pairs], "now": now})
            return made
        return ids
    return work


class PostgresOpsVerbs:
    """Mixed into PostgresStorage: uses its _read and _write."""

    def pause_queues(self, queues, now):
        return sorted(row[0] for row in self._returning(
            "pausing queues", "pause_queues", {"queues": sorted(set(queues)), "now": now}))

    def resume_queues(self, queues):
        return sorted(row[0] for row in self._returning(
            "resuming queues", "resume_queues", {"queues": sorted(set(queues))}))

    def paused_queues(self):
        # Sorted here: ORDER BY would follow the database's collation, not code points.
        return dict(sorted(self._read("reading paused queues", SQL["paused_queues"])))

    def request_restart(self, now):
        return self._returning("requesting a restart", "request_restart", {"now": now})[0][0]

    def controls(self):
        return Controls.from_rows(self._read("reading paused queues and restart requests", SQL["controls"]))

    def prune_failed(self, before, limit):
        if limit <= 0:
            return 0
        def work(conn):
            cursor = conn.execute(SQL["prune_failed"], {"before": before, "limit": limit})
            return lambda: max(cursor.rowcount, 0)
        return self._write("pruning failed jobs", work)

    def _returning(self, doing: str, name: str, params: dict) -> list:
        """The rows of one writing statement in its own transaction."""
        def work(conn):
            cursor = conn.execute(SQL[name], params)
            return lambda: cursor.fetchall()
        return self._write(doing, work)

    def _with_tags(self, records: list) -> list:
        """The records with their tags, sorted (one indexed read for them all)."""
        if records:
            tags: dict[int, list] = {}
            for job_id, tag in self._read("reading job tags", SQL["tags_of"],
                                          {"ids": [r.id for r in records]}):
                tags.setdefault(job_id, []).append(tag)
            for record in records:
                record.tags = sorted(tags.get(record.id, []))
        return records
