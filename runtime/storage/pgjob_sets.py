"""The job-set verbs (runtime.storage.job_sets) of the PostgreSQL backend: the ids go in
as one array, and each is a primary-key probe."""

from __future__ import annotations

import time

from runtime.storage.job_sets import unique_ids


class PostgresJobSetVerbs:
    """Mixed into PostgresStorage: uses its SQL, _read and _gated_change."""

    def count_states(self, job_ids) -> dict[str, int]:
        rows = self._read("counting jobs by state", self.SQL["count_states"],
                          {"ids": unique_ids(job_ids)})
        return {state: n for state, n in rows}

    def delete_jobs(self, job_ids, now: float | None = None) -> int:
        return self._gated_change("deleting jobs", "delete_jobs", {"ids": unique_ids(job_ids)},
                                  time.time() if now is None else now)
