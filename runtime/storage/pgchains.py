"""Chains in the PostgreSQL backend: the verbs; moving on is the trigger's and
jobrt_chain_due's (postgres.sql, migrations 11 and 12)."""

from __future__ import annotations

import orjson

from runtime.storage.workflows import ChainRecord, jobs_within, step_label, step_spec
from runtime.storage.pgparams import check_jobs


class PostgresChainVerbs:
    """Mixed into PostgresStorage: uses its SQL, _write, _read, channel and target."""

    def create_chain(self, steps: list, catch, queue: str, now: float):
        check_jobs(jobs_within(steps), self.target.where)

        def work(conn):
            made = self._new_chain(conn, steps, catch, queue, now, None)
            # a first step that is a batch may have finished already (an empty one)
            conn.execute(self.SQL["batch_due"], {"now": now, "channel": self.channel})
            return lambda: made
        return self._write("creating a chain", work)

    def _new_chain(self, conn, steps: list, catch, queue: str, now: float, batch_id):
        """A chain (a member of batch `batch_id`, if not None) and its first step: (chain
        id, the first step's job id, or None when it is a batch)."""
        chain_id = conn.execute(self.SQL["insert_chain"], {
            "queue": queue, "catch": catch, "now": now, "batch": batch_id,
            "steps": orjson.dumps([step_spec(step) for step in steps]).decode()}).fetchone()[0]
        first = conn.execute(self.SQL["chain_first"], {
            "chain": chain_id, "now": now, "channel": self.channel}).fetchone()[0]
        return chain_id, first if isinstance(first, int) else None

    def chain(self, chain_id: int):
        rows = self._read(f"reading chain {chain_id}", self.SQL["chain_row"],
                          {"chain": chain_id}, dicts=True)
        if not rows:
            return None
        row = rows[0]
        return ChainRecord(id=row["id"], queue=row["queue"], state=row["state"],
                           steps=[step_label(step) for step in row["steps"]],
                           jobs=list(row["jobs"]), created_at=row["created_at"],
                           finished_at=row["finished_at"], catch=row["catch_job"],
                           batch_id=row["batch_id"])
