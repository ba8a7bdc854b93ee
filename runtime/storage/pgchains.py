"""Chains in the PostgreSQL backend: the verbs; moving on is the trigger's and
jobrt_chain_due's (postgres.sql, migration 11)."""

from __future__ import annotations

import orjson

from runtime.storage.base import NewJob
from runtime.storage.workflows import ChainRecord, step_spec
from runtime.storage.pgparams import check_jobs


class PostgresChainVerbs:
    """Mixed into PostgresStorage: uses its SQL, _write, _read, channel and target."""

    def create_chain(self, steps: list[NewJob], catch, queue: str, now: float):
        check_jobs(steps, self.target.where)

        def work(conn):
            chain_id = conn.execute(self.SQL["insert_chain"], {
                "queue": queue, "catch": catch, "now": now,
                "steps": orjson.dumps([step_spec(step) for step in steps]).decode()}).fetchone()[0]
            first = conn.execute(self.SQL["chain_first"], {
                "chain": chain_id, "now": now, "channel": self.channel})
            return lambda: (chain_id, first.fetchone()[0])
        return self._write("creating a chain", work)

    def chain(self, chain_id: int):
        rows = self._read(f"reading chain {chain_id}", self.SQL["chain_row"],
                          {"chain": chain_id}, dicts=True)
        if not rows:
            return None
        row = rows[0]
        return ChainRecord(id=row["id"], queue=row["queue"], state=row["state"],
                           steps=[step[1] for step in row["steps"]], jobs=list(row["jobs"]),
                           created_at=row["created_at"], finished_at=row["finished_at"],
                           catch=row["catch_job"])
