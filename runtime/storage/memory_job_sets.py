"""The job-set verbs (runtime.storage.job_sets) of the memory backend: the model."""

from __future__ import annotations

from runtime.storage.base import RUNNING
from runtime.storage.job_sets import unique_ids


class MemoryJobSets:
    """Mixed into MemoryStorage: uses its jobs, clock, _moved and _workflows_due."""

    def count_states(self, job_ids) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job_id in unique_ids(job_ids):
            job = self.jobs.get(job_id)
            if job is not None:
                counts[job["state"]] = counts.get(job["state"], 0) + 1
        return counts

    def delete_jobs(self, job_ids, now: float | None = None) -> int:
        doomed = [i for i in unique_ids(job_ids) if i in self.jobs and self.jobs[i]["state"] != RUNNING]
        for job_id in doomed:
            job = self.jobs.pop(job_id)
            self._moved(job, job["state"], None)
        self._workflows_due(self.clock() if now is None else now)
        return len(doomed)
