"""The operators' verbs (runtime.storage.ops) in the in-memory backend (the model)."""

from __future__ import annotations

from runtime.storage.base import FAILED
from runtime.storage.ops import Controls


class MemoryOps:
    """Mixed into MemoryStorage, whose `jobs` it reads."""

    def _ops_init(self) -> None:
        self.paused: dict[str, float] = {}  # queue -> when it was paused
        self.restart_generation = 0

    def pause_queues(self, queues, now):
        fresh = sorted(set(queues) - set(self.paused))
        for queue in fresh:
            self.paused[queue] = now
        return fresh

    def resume_queues(self, queues):
        found = sorted(set(queues) & set(self.paused))
        for queue in found:
            del self.paused[queue]
        return found

    def paused_queues(self):
        return dict(sorted(self.paused.items()))

    def request_restart(self, now):
        self.restart_generation += 1
        return self.restart_generation

    def controls(self):
        return Controls(tuple(sorted(self.paused)), self.restart_generation)

    def prune_failed(self, before, limit):
        if limit <= 0:
            return 0
        old = sorted((j for j in self.jobs.values()
                      if j["state"] == FAILED and j["finished_at"] < before),
                     key=lambda j: (j["finished_at"], j["id"]))[:limit]
        for job in old:
            del self.jobs[job["id"]]
        return len(old)

    def _with_tags(self, record):
        """The record with its job's tags (kept in the job's dict, sorted)."""
        record.tags = list(self.jobs[record.id].get("tags", ()))
        return record
