"""Chains in the in-memory backend (the model): each chain a dict holding its steps (as
NewJobs, available_at their delay) and the job id of each step enqueued so far."""

from __future__ import annotations

import orjson

from runtime.storage.base import (
    CANCELLED, ENDED, FAILED, RUNNING, SUCCEEDED, NewJob,
)
from runtime.storage.workflows import ChainRecord


class MemoryChains:
    """Mixed into MemoryStorage, whose `jobs` and `_insert` it uses."""

    def _chains_init(self) -> None:
        self.chain_rows: dict[int, dict] = {}
        self.last_chain = 0

    def create_chain(self, steps: list[NewJob], catch: str | None, queue: str, now: float):
        self.last_chain += 1
        row = self.chain_rows[self.last_chain] = dict(
            id=self.last_chain, queue=queue, catch_job=catch, steps=list(steps), jobs=[],
            state=RUNNING, created_at=now, finished_at=None, fired=False, due=False)
        self._next_step(row, now)
        return row["id"], row["jobs"][0]

    def chain(self, chain_id: int) -> ChainRecord | None:
        row = self.chain_rows.get(chain_id)
        if row is None:
            return None
        return ChainRecord(id=row["id"], queue=row["queue"], state=row["state"],
                           steps=[step.name for step in row["steps"]], jobs=list(row["jobs"]),
                           created_at=row["created_at"], finished_at=row["finished_at"],
                           catch=row["catch_job"])

    def _chain_moved(self, job: dict, after: str | None) -> None:
        """A job changed state: the chain of a step that ended has its next move due."""
        row = self.chain_rows.get(job.get("chain_id")) if job.get("chain_id") else None
        if row is not None and after in ENDED:
            row["due"] = True

    def _chains_due(self, now: float) -> None:
        for chain_id in sorted(i for i, row in self.chain_rows.items() if row["due"]):
            row = self.chain_rows[chain_id]
            row["due"] = False
            step = self.jobs.get(row["jobs"][-1])
            if step is None:
                continue  # pruned: nothing left to follow
            if step["state"] == SUCCEEDED:
                if len(row["jobs"]) < len(row["steps"]):
                    row.update(state=RUNNING, finished_at=None)
                    self._next_step(row, now)
                else:
                    row.update(state=SUCCEEDED, finished_at=now)
            elif step["state"] in (FAILED, CANCELLED):
                row.update(state=step["state"], finished_at=now)
                if step["state"] == FAILED and not row["fired"]:
                    row["fired"] = True
                    if row["catch_job"]:
                        record = self.chain(chain_id).to_dict()
                        self._insert(NewJob(row["queue"], row["catch_job"],
                                            orjson.dumps([[record], {}]), now), now)

    def _next_step(self, row: dict, now: float) -> None:
        step = row["steps"][len(row["jobs"])]
        job_id = self.enqueue([step._replace(available_at=now + step.available_at)])[0]
        self.jobs[job_id]["chain_id"] = row["id"]
        row["jobs"].append(job_id)
