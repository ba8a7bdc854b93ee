"""The browsing verbs in the in-memory backend (the model): filters over the dicts."""

from __future__ import annotations

from runtime.storage.base import decode_record
from runtime.storage.browse import PAGE_MAX, add_minutes, bucket_rows, check_by
from runtime.storage.workflows import batch_record


class MemoryBrowse:
    """Mixed into MemoryStorage, whose `jobs`, `batch_rows` and `minute_rows` it reads."""

    def jobs_page(self, *, state=None, queue=None, name=None, batch_id=None, before=None,
                  limit=50, tag=None):
        batch = None if batch_id is None else str(batch_id)
        found = [job for job in self.jobs.values()
                 if (state is None or job["state"] == state)
                 and (queue is None or job["queue"] == queue)
                 and (name is None or job["name"] == name)
                 and (batch is None or job["batch_id"] == batch)
                 and (before is None or job["id"] < before)
                 and (tag is None or tag in job.get("tags", ()))]
        found.sort(key=lambda job: job["id"], reverse=True)
        return [self._with_tags(decode_record(job)) for job in found[:max(0, min(limit, PAGE_MAX))]]

    def batches_page(self, before=None, limit=50):
        ids = sorted((i for i in self.batch_rows if before is None or i < before), reverse=True)
        return [batch_record(self.batch_rows[i], self._running_members(i))
                for i in ids[:max(0, min(limit, PAGE_MAX))]]

    def record_minutes(self, rows):
        self.minute_rows = add_minutes([*self.minute_rows.values(), *rows])

    def minute_series(self, since, bucket, by):
        check_by(by)
        return bucket_rows(self.minute_rows.values(), since, bucket, by)

    def prune_minutes(self, before):
        doomed = [key for key in self.minute_rows if key[0] < before]
        for key in doomed:
            del self.minute_rows[key]
        return len(doomed)
