"""Chains in the in-memory backend (the model): each chain a dict holding its steps (as
NewJobs or BatchSteps, available_at their delay) and what each step enqueued so far: a
job id, or {"batch": id}."""

from __future__ import annotations

import orjson

from runtime.storage import chain_rules
from runtime.storage.base import ENDED, RUNNING, NewJob
from runtime.storage.workflows import BatchStep, ChainRecord, step_label, step_outcome, step_spec


class MemoryChains:
    """Mixed into MemoryStorage, whose `jobs`, `_insert` and batches it uses."""

    def _chains_init(self) -> None:
        self.chain_rows: dict[int, dict] = {}
        self.last_chain = 0

    def create_chain(self, steps: list, catch: str | None, queue: str, now: float):
        chain_id, first = self._new_chain(steps, catch, queue, None, now)
        self._workflows_due(now)
        return chain_id, first

    def _new_chain(self, steps: list, catch: str | None, queue: str, batch_id: int | None,
                   now: float):
        """A chain (of a batch, if batch_id) and its first step; (id, first job id or None)."""
        self.last_chain += 1
        row = self.chain_rows[self.last_chain] = dict(
            id=self.last_chain, queue=queue, catch_job=catch, steps=list(steps), jobs=[],
            state=RUNNING, created_at=now, finished_at=None, fired=False, due=False,
            batch_id=batch_id)
        self._next_step(row, now)
        first = row["jobs"][0]
        return row["id"], first if isinstance(first, int) else None

    def chain(self, chain_id: int) -> ChainRecord | None:
        row = self.chain_rows.get(chain_id)
        if row is None:
            return None
        return ChainRecord(id=row["id"], queue=row["queue"], state=row["state"],
                           steps=[step_label(step_spec(step)) for step in row["steps"]],
                           jobs=[dict(j) if isinstance(j, dict) else j for j in row["jobs"]],
                           created_at=row["created_at"], finished_at=row["finished_at"],
                           catch=row["catch_job"], batch_id=row["batch_id"])

    def _chain_moved(self, job: dict, after: str | None) -> None:
        """A job changed state: the chain of a step that ended has its next move due."""
        row = self.chain_rows.get(job.get("chain_id")) if job.get("chain_id") else None
        if row is not None and after in ENDED:
            row["due"] = True

    def _chains_due(self, now: float) -> bool:
        """Move on every chain marked due, in id order; True if that changed a batch (made
        one, or changed the counts of the batch a chain is a member of)."""
        touched = False
        for chain_id in sorted(i for i, row in self.chain_rows.items() if row["due"]):
            row = self.chain_rows[chain_id]
            row["due"] = False
            last = row["jobs"][-1]
            if isinstance(last, dict):
                outcome = step_outcome(self.batch_rows.get(last["batch"]))
            else:
                step = self.jobs.get(last)
                outcome = None if step is None else step["state"]
            member_of = self.batch_rows.get(row["batch_id"])
            move = chain_rules.move(row["state"], row["fired"], row["catch_job"] is not None,
                                    outcome, len(row["jobs"]), len(row["steps"]),
                                    member_of is not None,
                                    member_of is not None and member_of["cancelled_at"] is not None)
            if move is None:
                continue
            row.update(state=move.state, finished_at=now if move.finished else None,
                       fired=move.fired)
            if move.cancelled:
                member_of["cancelled"] += move.cancelled
                member_of["due"] = touched = True
            if move.enqueue_next:
                touched |= self._next_step(row, now)
            if move.catch:
                record = self.chain(chain_id).to_dict()
                self._insert(NewJob(row["queue"], row["catch_job"],
                                    orjson.dumps([[record], {}]), now), now)
        return touched

    def _next_step(self, row: dict, now: float) -> bool:
        """Enqueue the chain's next step; True if it is a batch."""
        step = row["steps"][len(row["jobs"])]
        if isinstance(step, BatchStep):
            members = [m._replace(available_at=now + m.available_at) for m in step.members]
            batch_id = self._new_batch(step.batch, now, chain_id=row["id"])
            self._add_members(batch_id, members, now)
            row["jobs"].append({"batch": batch_id})
            return True
        batch = None if row["batch_id"] is None else str(row["batch_id"])
        job_id = self.enqueue([step._replace(available_at=now + step.available_at, batch_id=batch)])[0]
        self.jobs[job_id]["chain_id"] = row["id"]
        row["jobs"].append(job_id)
        return False
