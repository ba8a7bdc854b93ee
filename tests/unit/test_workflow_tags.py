"""Tags reach the jobs of workflows as they reach jobs enqueued on their own: a job's own
tags= merged with the item's _tags, on a batch's members (also those added later) and on
a chain's steps (the storage contract checks the later steps and every backend)."""

from __future__ import annotations

from runtime import connect, job


@job(tags=["billing"])
def invoice(n: int) -> int:
    return n


def test_a_workflows_jobs_carry_their_own_tags_and_the_items(tmp_path):
    with connect(f"sqlite:///{tmp_path}/q.db") as q:
        batch = q.batch([(invoice, (1,)), (invoice, (2,), {}, {"_tags": ["user:42"]}),
                         ("jobs.examples:add", (1, 2))])
        members = q.storage.jobs_page(batch_id=batch.id)
        assert sorted(r.tags for r in members) == [[], ["billing"], ["billing", "user:42"]]
        [added] = q.batch_add(batch.id, [("jobs.examples:add", (3, 4), {}, {"_tags": ["late"]})])
        assert q.status(added).tags == ["late"]
        chain = q.chain([(invoice, (3,), {}, {"_tags": ["step"]}), (invoice, (4,))])
        assert q.status(chain.first_job_id).tags == ["billing", "step"]
