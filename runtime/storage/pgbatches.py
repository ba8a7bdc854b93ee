"""Batches in the PostgreSQL backend: the verbs, each one transaction; the counts and the
callbacks are the triggers' and jobrt_batch_due's (postgres.sql, migration 10)."""

from __future__ import annotations

import time

from runtime.storage import pginsert
from runtime.storage.workflows import ChainMember, NewBatch, batch_record, jobs_within
from runtime.storage.pgops import tagging
from runtime.storage.pgparams import check_jobs


class PostgresBatchVerbs:
    """Mixed into PostgresStorage: uses its SQL, _write, _read, channel, target and the
    chain verbs' _new_chain."""

    def create_batch(self, batch: NewBatch, jobs: list, now: float):
        check_jobs(jobs_within(jobs), self.target.where)

        def work(conn):
            batch_id = conn.execute(self.SQL["insert_batch"], {
                "name": batch.name, "queue": batch.queue, "then": batch.then,
                "catch": batch.catch, "finally": batch.finally_,
                "allow_failures": batch.allow_failures, "now": now}).fetchone()[0]
            ids = self._members(conn, batch_id, jobs, now)
            return lambda: (batch_id, ids)
        return self._write("creating a batch", work, confirm_first=True)

    def batch_add(self, batch_id: int, jobs: list, now: float):
        check_jobs(jobs_within(jobs), self.target.where)

        def work(conn):
            if not conn.execute(self.SQL["batch_open"], {"batch": batch_id}).fetchall():
                return lambda: None
            ids = self._members(conn, batch_id, jobs, now)
            return lambda: ids
        return self._write(f"adding jobs to batch {batch_id}", work, confirm_first=True)

    def _members(self, conn, batch_id: int, jobs: list, now: float) -> list[int]:
        """Insert members in order (as enqueue does; a ChainMember: its chain, whose first
        step's id it gives), count those made, and run what is due."""
        ids, plain, steps, start = [], [], 0, 0
        for end in range(len(jobs) + 1):
            if end < len(jobs) and not isinstance(jobs[end], ChainMember):
                continue
            members = [job._replace(batch_id=str(batch_id)) for job in jobs[start:end]]
            if members:  # the jobs since the last chain, in one go
                insert = pginsert.insert_unique if any(j.unique_key is not None for j in members) \
                    else pginsert.insert_bulk
                if any(j.tags for j in members):
                    insert = tagging(insert, members)
                made = insert(conn, self.SQL, members, time.time(), self.channel, self.target.where)()
                ids += made
                plain += made
            if end < len(jobs):
                chain = jobs[end]
                steps += len(chain.steps)
                ids.append(self._new_chain(conn, chain.steps, chain.catch, chain.queue, now,
                                           batch_id)[1])
            start = end + 1
        conn.execute(self.SQL["batch_grew"], {"ids": plain, "batch": batch_id, "steps": steps})
        conn.execute(self.SQL["batch_due"], {"now": now, "channel": self.channel}).fetchall()
        return ids

    def batch(self, batch_id: int):
        rows = self._read(f"reading batch {batch_id}", self.SQL["batch_row"], {"batch": batch_id},
                          dicts=True)
        return self._record(rows[0]) if rows else None

    def batches(self, limit: int = 100):
        rows = self._read("listing batches", self.SQL["batch_rows"], {"limit": limit}, dicts=True)
        return [self._record(row) for row in rows]

    def _record(self, row: dict):
        running = self._read("counting a batch's running jobs", self.SQL["batch_running"],
                             {"batch": row["id"]})[0][0]
        return batch_record(row, running)

    def batch_cancel(self, batch_id: int, now: float, kill: bool = False):
        def work(conn):
            found = conn.execute(self.SQL["batch_cancel"], {"batch": batch_id, "now": now}).fetchall()
            if not found or not found[0][0]:
                return lambda: None if not found else False
            if kill:
                conn.execute(self.SQL["batch_kill_members"], {"batch": batch_id, "now": now})
            conn.execute(self.SQL["batch_cancel_members"],
                         {"batch": batch_id, "now": now, "channel": self.channel})
            conn.execute(self.SQL["batch_due"], {"now": now, "channel": self.channel})
            return lambda: True
        return self._write(f"cancelling batch {batch_id}", work)
