"""The operators' storage verbs on memory, SQLite and PostgreSQL: paused queues, restart
requests, pruning the failed-jobs store by age, and job tags (stored with the jobs an
enqueue made, listed by tag newest first, gone with their jobs)."""

from __future__ import annotations

import orjson

from runtime.storage import NewJob, Outcome
from runtime.storage.ops import Controls

LEASE = 30.0


def job(queue="default", name="jobs.examples:add", tags=(), unique=None) -> NewJob:
    return NewJob(queue, name, orjson.dumps([[1, 2], {}]), 0.0, tags=tuple(tags), unique_key=unique)


def fail(store, queue: str, count: int, at: float) -> list[int]:
    """Claim `count` jobs of `queue` and settle them failed at `at`; their ids."""
    claimed = store.claim("s1", [queue], count, at + LEASE, at)
    store.settle("s1", [Outcome(c.id, c.attempt, "failed", at, error="boom", queue=queue, name=c.name)
                        for c in claimed])
    return [c.id for c in claimed]


def test_pause_and_resume_are_rows_every_reader_sees(store):
    assert store.controls() == Controls((), 0)
    assert store.pause_queues(["low", "emails", "low"], 10.0) == ["emails", "low"]
    assert store.pause_queues(["emails", "high"], 11.0) == ["high"]  # emails was paused already
    assert store.paused_queues() == {"emails": 10.0, "high": 11.0, "low": 10.0}
    assert store.controls() == Controls(("emails", "high", "low"), 0)
    assert store.resume_queues(["low", "nope"]) == ["low"]
    assert store.resume_queues(["low"]) == []
    assert store.controls().paused == ("emails", "high")
    assert store.resume_queues(["emails", "high"]) == ["emails", "high"]
    assert store.paused_queues() == {} and store.controls() == Controls((), 0)


def test_pausing_a_queue_changes_no_job(store):
    made = store.enqueue([job("emails"), job("default")])
    store.pause_queues(["emails"], 1.0)
    # storage keeps the row; the supervisor leaves the queue out of its claims
    assert [r.state for r in map(store.get, made)] == ["pending", "pending"]
    assert store.counts(1.0)["emails"]["pending"] == 1


def test_restart_requests_count_up(store):
    assert store.request_restart(5.0) == 1
    assert store.request_restart(6.0) == 2
    store.pause_queues(["q"], 7.0)
    assert store.controls() == Controls(("q",), 2)


def test_prune_failed_deletes_only_old_failed_jobs_oldest_first(store):
    store.enqueue([job("old")] * 3 + [job("new")] * 2 + [job("ok")])
    old = fail(store, "old", 3, 100.0)
    new = fail(store, "new", 2, 500.0)
    [ok] = store.claim("s1", ["ok"], 1, 100.0 + LEASE, 100.0)
    store.settle("s1", [Outcome(ok.id, 1, "succeeded", 100.0, queue="ok", name=ok.name)])
    assert store.prune_failed(300.0, 0) == 0
    assert store.prune_failed(300.0, 2) == 2
    assert [store.get(i) for i in old[:2]] == [None, None]
    assert store.prune_failed(300.0, 2) == 1
    assert store.prune_failed(300.0, 2) == 0
    assert [r.id for r in store.failed()] == new[::-1]
    assert store.get(ok.id).state == "succeeded"  # an old success is prune's, not this verb's
    assert "old" not in store.counts(600.0) and store.counts(600.0)["new"]["failed"] == 2


def test_tags_are_stored_listed_by_tag_and_go_with_their_job(store):
    made = store.enqueue([job(tags=["user:1", "mail"]), job(), job(tags=["mail"]),
                          job("other", tags=["mail", "mail"])])
    assert store.get(made[0]).tags == ["mail", "user:1"]
    assert store.get(made[1]).tags == []
    assert store.get(made[0]).to_dict()["tags"] == ["mail", "user:1"]
    assert [r.id for r in store.jobs_page(tag="mail")] == [made[3], made[2], made[0]]
    assert [r.tags for r in store.jobs_page(tag="mail")] == [["mail"], ["mail"], ["mail", "user:1"]]
    assert [r.id for r in store.jobs_page(tag="mail", limit=1, before=made[3])] == [made[2]]
    assert [r.id for r in store.jobs_page(tag="mail", queue="default")] == [made[2], made[0]]
    assert [r.id for r in store.jobs_page(tag="user:1")] == [made[0]]
    assert store.jobs_page(tag="nope") == []
    # a failed tagged job, pruned from the failed store, leaves no tag behind
    fail(store, "other", 1, 100.0)
    assert [r.id for r in store.jobs_page(tag="mail", state="failed")] == [made[3]]
    assert store.prune_failed(200.0, 10) == 1
    assert [r.id for r in store.jobs_page(tag="mail")] == [made[2], made[0]]
    assert store.clear("default") == 3
    assert store.jobs_page(tag="mail") == [] and store.jobs_page(tag="user:1") == []


def test_a_unique_duplicate_adds_no_tags_to_the_live_job(store):
    [first] = store.enqueue([job(unique="k", tags=["a"])])
    again = store.enqueue([job(unique="k", tags=["b"]), job(tags=["b"])])
    assert again[0] == first
    assert store.get(first).tags == ["a"]
    assert [r.id for r in store.jobs_page(tag="b")] == [again[1]]


# -- the jobs of workflows and schedules carry their tags as enqueue's do --------------

def test_batch_members_chain_steps_and_ticks_carry_their_tags(store):
    from runtime.storage.ticks import NewTick
    from runtime.storage.workflows import BatchStep, ChainMember, NewBatch

    def tags(job_id):
        return store.get(job_id).tags

    batch_id, (a, b, c) = store.create_batch(NewBatch("default"), [
        job(tags=["billing"]), job(), ChainMember([job(tags=["step:1"]), job(tags=["step:2"])],
                                                  None, "default")], 10.0)
    assert (tags(a), tags(b), tags(c)) == (["billing"], [], ["step:1"])
    [d] = store.batch_add(batch_id, [job(tags=["late", "billing"])], 11.0)
    assert tags(d) == ["billing", "late"]
    assert [r.id for r in store.jobs_page(tag="billing")] == [d, a]

    chain_id, first = store.create_chain([
        job(tags=["first"]), BatchStep(NewBatch("default"), [job(tags=["member"]), job()]),
        job(tags=["last"])], None, "default", 20.0)
    assert tags(first) == ["first"]
    claimed = store.claim("s1", ["default"], 1, 100.0 + LEASE, 100.0)
    while claimed:  # run every job as it comes, in id order, until none is left
        [run] = claimed
        store.settle("s1", [Outcome(run.id, run.attempt, "succeeded", 100.0, queue=run.queue,
                                    name=run.name)])
        claimed = store.claim("s1", ["default"], 1, 100.0 + LEASE, 100.0)
    jobs = store.chain(chain_id).jobs
    assert store.chain(chain_id).state == "succeeded"
    assert tags(jobs[2]) == ["last"]
    members = store.jobs_page(batch_id=jobs[1]["batch"])
    assert sorted(r.tags for r in members) == [[], ["member"]]
    # the batch's chain member went on (its first step ran in the loop), with its tags
    assert [r.tags for r in store.jobs_page(tag="step:2")] == [["step:2"]]

    [tick] = store.enqueue_ticks([NewTick("nightly", 30.0, job(tags=["cron"]))], 30.0)
    assert tags(tick.job_id) == ["cron"]
    # A unique job whose key a live job holds makes no job, so adds no tags to that one.
    [held] = store.enqueue([job(unique="k")])
    [again] = store.enqueue_ticks([NewTick("nightly", 31.0, job(unique="k", tags=["cron"]))], 31.0)
    assert again.job_id == held and tags(held) == []
