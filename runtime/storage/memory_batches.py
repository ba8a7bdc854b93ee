"""Batches in the in-memory backend (the model): each batch a dict of counts kept in step
with its members' states, and its callbacks enqueued by runtime.storage.batch_rules."""

from __future__ import annotations

from runtime.storage import batch_rules
from runtime.storage.base import (
    CANCELLED, ENDED, FAILED, PENDING, RUNNING, SUCCEEDED, NewJob,
)
from runtime.storage.workflows import BatchRecord, ChainMember, NewBatch, batch_record


class MemoryBatches:
    """Mixed into MemoryStorage, whose `jobs`, `_insert` and state changes it uses."""

    def _batches_init(self) -> None:
        self.batch_rows: dict[int, dict] = {}
        self.last_batch = 0

    def create_batch(self, batch: NewBatch, jobs: list, now: float):
        batch_id = self._new_batch(batch, now)
        ids = self._add_members(batch_id, jobs, now)
        self._workflows_due(now)
        return batch_id, ids

    def _new_batch(self, batch: NewBatch, now: float, chain_id: int | None = None) -> int:
        self.last_batch += 1
        self.batch_rows[self.last_batch] = dict(
            id=self.last_batch, name=batch.name, queue=batch.queue, then_job=batch.then,
            catch_job=batch.catch, finally_job=batch.finally_,
            allow_failures=batch.allow_failures, total=0, succeeded=0, failed=0, cancelled=0,
            failed_ids=[], created_at=now, finished_at=None, cancelled_at=None, fired=0,
            due=True, chain_id=chain_id)
        return self.last_batch

    def batch_add(self, batch_id: int, jobs: list, now: float):
        row = self.batch_rows.get(batch_id)
        if row is None or row["finished_at"] is not None:
            return None
        ids = self._add_members(batch_id, jobs, now)
        self._workflows_due(now)
        return ids

    def _add_members(self, batch_id: int, jobs: list, now: float) -> list[int]:
        """Members in the order given: jobs, and chains (ChainMember: its first step's id)."""
        ids, made = [], 0
        for job in jobs:
            if isinstance(job, ChainMember):
                made += len(job.steps)
                ids.append(self._new_chain(job.steps, job.catch, job.queue, batch_id, now)[1])
                continue
            before = self.last_id
            ids += self.enqueue([job._replace(batch_id=str(batch_id))])
            made += ids[-1] > before  # a job whose unique key a live job held: not a member
        self.batch_rows[batch_id]["total"] += made
        self.batch_rows[batch_id]["due"] = True
        return ids

    def batch(self, batch_id: int) -> BatchRecord | None:
        row = self.batch_rows.get(batch_id)
        return None if row is None else batch_record(row, self._running_members(batch_id))

    def batches(self, limit: int = 100) -> list[BatchRecord]:
        return [self.batch(i) for i in sorted(self.batch_rows, reverse=True)[:limit]]

    def batch_cancel(self, batch_id: int, now: float, kill: bool = False):
        row = self.batch_rows.get(batch_id)
        if row is None:
            return None
        if row["finished_at"] is not None:
            return False
        row["cancelled_at"] = row["cancelled_at"] or now
        for job in self.jobs.values() if kill else ():
            if job["batch_id"] == str(batch_id) and job["state"] == RUNNING:
                job["cancel_requested"] = now
        self._cancel_members(batch_id, now)
        self._workflows_due(now)
        return True

    # -- what the storage verbs call ------------------------------------------------
    def _member_moved(self, job: dict, before: str, after: str | None) -> None:
        """A job changed state (`after` None: deleted): its batch's counts follow."""
        row = self.batch_rows.get(int(job["batch_id"])) if job["batch_id"] else None
        if row is None or before == after:
            return
        if after is None:
            if before in (PENDING, RUNNING):
                row["total"] -= 1
                row["due"] = True
            return
        if before not in ENDED and after not in ENDED:
            # pending <-> running: the counts hold ended members only; but a member of a
            # cancelled batch back in its queue (a retry, a rescue) is to be cancelled
            row["due"] |= after == PENDING and row["cancelled_at"] is not None
            return
        for state in (SUCCEEDED, FAILED, CANCELLED):
            row[state] += (after == state) - (before == state)
        if after == FAILED:
            row["failed_ids"].append(job["id"])
        if before == FAILED:
            row["failed_ids"].remove(job["id"])
        row["due"] = True

    def _batches_due(self, now: float) -> None:
        """Enqueue the callbacks of the batches marked due, in id order (first cancelling
        the pending members of those of them that were cancelled)."""
        for batch_id in sorted(i for i, row in self.batch_rows.items()
                               if row["due"] and row["cancelled_at"] is not None):
            self._cancel_members(batch_id, now, returned=True)
        for batch_id in sorted(i for i, row in self.batch_rows.items() if row["due"]):
            row = self.batch_rows[batch_id]
            callbacks = []
            while True:
                step = batch_rules.step(row, now)
                callbacks += step.callbacks
                if step.finished_at is not None and row["finished_at"] is None \
                        and row["chain_id"] is not None:
                    self.chain_rows[row["chain_id"]]["due"] = True  # its step ended
                row.update(fired=step.fired, finished_at=step.finished_at,
                           cancelled_at=step.cancelled_at, due=False)
                if not step.cancel_pending:
                    break
                self._cancel_members(batch_id, now)
            record = self.batch(batch_id)
            for name in callbacks:
                self._insert(NewJob(row["queue"], name, batch_rules.callback_payload(record), now),
                             now)

    def _cancel_members(self, batch_id: int, now: float, returned: bool = False) -> None:
        """Cancel the batch's pending members; `returned`: only those back in their queue by
        a retry or a rescue (not by an operator's retry of the failed ones)."""
        for job in self.jobs.values():
            if job["batch_id"] == str(batch_id) and job["state"] == PENDING \
                    and not (returned and job["retried_at"] is not None):
                job.update(state=CANCELLED, finished_at=now)
                self._moved(job, PENDING, CANCELLED)

    def _running_members(self, batch_id: int) -> int:
        return sum(1 for job in self.jobs.values()
                   if job["batch_id"] == str(batch_id) and job["state"] == RUNNING)
