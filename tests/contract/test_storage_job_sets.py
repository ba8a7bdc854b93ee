"""The job-set verbs (count_states, delete_jobs) through the storage contract, on memory,
SQLite and PostgreSQL: exactly the jobs named are counted and deleted, running ones stay,
and a deleted pending job leaves its gates and its batch as `clear` would."""

from __future__ import annotations

import orjson

from runtime.storage import NewJob, Outcome
from runtime.storage.workflows import NewBatch

LEASE = 30.0


def new(queue="default", at=0.0, overlap=None, batch_id=None) -> NewJob:
    return NewJob(queue, "jobs.examples:add", orjson.dumps([[1, 2], {}]), at, overlap_key=overlap,
                  batch_id=batch_id)


def claim(store, limit=10, now=100.0, queues=("default",)):
    return store.claim("s1", list(queues), limit, now + LEASE, now)


def ended(job, state="succeeded", at=101.0):
    return Outcome(job.id, job.attempt, state, at, queue=job.queue, name=job.name,
                   overlap_key=job.overlap_key, rate_key=job.rate_key, error="x")


def test_count_states_counts_exactly_the_jobs_named(store):
    ids = store.enqueue([new() for _ in range(5)] + [new(at=900.0)])
    others = store.enqueue([new(), new(queue="other")])
    done, failed, running = claim(store, limit=3)
    store.settle("s1", [ended(done), ended(failed, "failed")])
    assert store.count_states(ids) == {"succeeded": 1, "failed": 1, "running": 1, "pending": 3}
    assert store.count_states([ids[-1], ids[-1], 10**12]) == {"pending": 1}  # twice; no such job
    assert store.count_states([]) == {}
    assert store.count_states(others) == {"pending": 2}


def test_delete_jobs_deletes_pending_and_ended_ones_and_leaves_running_ones(store):
    ids = store.enqueue([new() for _ in range(4)] + [new(at=900.0)])
    keep = store.enqueue([new(), new(queue="other")])
    done, failed, running = claim(store, limit=3)
    store.settle("s1", [ended(done), ended(failed, "failed")])
    assert store.delete_jobs(ids + [10**12], 102.0) == 4
    assert store.count_states(ids) == {"running": 1}
    assert store.failed() == []
    counts = store.counts(102.0)
    assert counts["default"]["running"] == 1 and counts["default"]["pending"] == 1  # keep[0]
    assert counts["default"]["delayed"] == 0 and counts["default"]["succeeded"] == 0
    assert counts["other"]["pending"] == 1
    store.settle("s1", [ended(running)])
    assert store.delete_jobs(ids, 103.0) == 1
    assert store.count_states(ids) == {}
    assert store.count_states(keep) == {"pending": 2}
    assert store.counts(103.0)["default"]["succeeded"] == 0


def test_deleting_the_pending_job_whose_turn_it_is_passes_the_turn_on(store):
    first, second = store.enqueue([new(overlap="k", at=1.0), new(overlap="k", at=2.0)])
    assert store.delete_jobs([first], 50.0) == 1
    assert [job.id for job in claim(store)] == [second]


def test_deleting_the_last_pending_members_finishes_their_batch(store):
    batch_id, members = store.create_batch(NewBatch("callbacks", allow_failures=True),
                                           [new(), new()], 50.0)
    [one] = claim(store, limit=1)
    store.settle("s1", [ended(one)])
    assert store.batch(batch_id).finished_at is None
    assert store.delete_jobs(members, 110.0) == 2
    status = store.batch(batch_id)
    assert status.pending == 0 and status.finished_at is not None
