"""Batches through the storage contract, on memory, SQLite and PostgreSQL: counts that
follow the members in every way they end or come back, and callbacks (catch, then,
finally) enqueued exactly once each, in the transaction that makes them due."""

from __future__ import annotations

import orjson

from runtime.storage import NewJob, Outcome
from runtime.storage.workflows import NewBatch

LEASE = 30.0
CALLBACKS = dict(then="cb:then", catch="cb:catch", finally_="cb:finally")


def member(queue="default", **extra) -> NewJob:
    return NewJob(queue, "jobs.examples:add", orjson.dumps([[1, 2], {}]), 0.0, **extra)


def claim(store, limit=10, now=100.0, queues=("default",)):
    return store.claim("s1", list(queues), limit, now + LEASE, now)


def end(job, state="succeeded", at=101.0, **extra):
    return Outcome(job.id, job.attempt, state, at, queue=job.queue, name=job.name, **extra)


def callbacks(store, since: int) -> list[tuple[str, dict]]:
    """(name, batch record) of every callback job made after job `since`."""
    found, job_id = [], since + 1
    while (record := store.get(job_id)) is not None:
        if record.name.startswith("cb:"):
            found.append((record.name, record.args[0]))
        job_id += 1
    return found


def test_then_and_finally_run_once_when_every_member_succeeded(store):
    batch_id, ids = store.create_batch(NewBatch("callbacks", "import 42", **CALLBACKS),
                                       [member() for _ in range(3)], 50.0)
    status = store.batch(batch_id)
    assert (status.total, status.pending, status.progress, status.name) == (3, 3, 0, "import 42")
    jobs = claim(store)
    assert store.batch(batch_id).running == 3
    store.settle("s1", [end(jobs[0]), end(jobs[1])])
    assert callbacks(store, ids[-1]) == []
    status = store.batch(batch_id)
    assert (status.succeeded, status.running, status.pending, status.progress) == (2, 1, 0, 66)
    store.settle("s1", [end(jobs[2], at=102.0)])
    made = callbacks(store, ids[-1])
    assert [name for name, _ in made] == ["cb:then", "cb:finally"]
    record = made[0][1]
    assert (record["id"], record["succeeded"], record["pending"], record["finished_at"],
            record["progress"]) == (batch_id, 3, 0, 102.0, 100)
    store.settle("s1", [end(jobs[2], at=103.0)])  # a repeated outcome changes nothing
    assert len(callbacks(store, ids[-1])) == 2
    assert store.batch(batch_id).finished_at == 102.0


def test_the_first_failure_runs_catch_once_and_cancels_the_pending_members(store):
    batch_id, ids = store.create_batch(NewBatch("callbacks", **CALLBACKS),
                                       [member() for _ in range(4)], 50.0)
    jobs = claim(store, limit=2)
    store.settle("s1", [end(jobs[0], "failed", error="boom")])
    status = store.batch(batch_id)
    assert (status.failed, status.cancelled, status.running, status.failed_job_ids) == (
        1, 2, 1, [jobs[0].id])
    assert status.cancelled_at == 101.0 and status.finished_at is None
    assert [name for name, _ in callbacks(store, ids[-1])] == ["cb:catch"]
    store.settle("s1", [end(jobs[1], "failed", at=102.0, error="again")])
    made = [name for name, _ in callbacks(store, ids[-1])]
    assert made == ["cb:catch", "cb:finally"]  # catch once; no then: members failed
    assert store.batch(batch_id).failed_job_ids == sorted([jobs[0].id, jobs[1].id])


def test_allow_failures_lets_the_others_run(store):
    batch_id, ids = store.create_batch(NewBatch("callbacks", allow_failures=True, **CALLBACKS),
                                       [member() for _ in range(2)], 50.0)
    first = claim(store, limit=1)
    store.settle("s1", [end(first[0], "failed", error="x")])
    assert store.batch(batch_id).pending == 1
    (second,) = claim(store)
    store.settle("s1", [end(second, at=105.0)])
    assert [name for name, _ in callbacks(store, ids[-1])] == ["cb:catch", "cb:finally"]


def test_an_empty_batch_runs_its_callbacks_at_once(store):
    batch_id, ids = store.create_batch(NewBatch("callbacks", **CALLBACKS), [], 50.0)
    assert ids == [] and store.batch(batch_id).finished_at == 50.0
    assert [name for name, _ in callbacks(store, 0)] == ["cb:then", "cb:finally"]
    assert store.batch_add(batch_id, [member()], 51.0) is None  # finished: nothing added


def test_add_cancel_retry_and_unknown_batches(store):
    batch_id, ids = store.create_batch(NewBatch("callbacks", **CALLBACKS), [member()], 50.0)
    added = store.batch_add(batch_id, [member(), member()], 51.0)
    assert len(added) == 2 and store.batch(batch_id).total == 3
    (running,) = claim(store, limit=1)
    assert store.batch_cancel(batch_id, 60.0) is True
    status = store.batch(batch_id)
    assert (status.cancelled, status.running, status.cancelled_at) == (2, 1, 60.0)
    assert callbacks(store, added[-1]) == []
    store.settle("s1", [end(running, "failed", at=61.0, error="x")])
    assert [name for name, _ in callbacks(store, added[-1])] == ["cb:catch", "cb:finally"]
    assert store.batch_cancel(batch_id, 62.0) is False  # finished
    assert store.batch(9999) is None and store.batch_cancel(9999, 1.0) is None
    assert store.batch_add(9999, [member()], 1.0) is None
    # retry: the failed member runs again; the batch is open until it ends, finally stays once
    assert store.retry_failed(store.batch(batch_id).failed_job_ids, 70.0) == 1
    status = store.batch(batch_id)
    assert (status.failed, status.pending, status.finished_at) == (0, 1, None)
    (again,) = claim(store, now=71.0)
    store.settle("s1", [end(again, at=72.0)])
    assert store.batch(batch_id).finished_at == 72.0
    assert [name for name, _ in callbacks(store, added[-1])] == ["cb:catch", "cb:finally"]


def test_counts_follow_rescue_cancel_and_clear(store):
    batch_id, _ = store.create_batch(NewBatch("callbacks", allow_failures=True),
                                     [member() for _ in range(3)], 50.0)
    claim(store, limit=1)
    store.rescue(1000.0)  # its lease ran out: back to pending, not ended
    assert store.batch(batch_id).pending == 3
    store.cancel(store.batch_add(batch_id, [member()], 60.0)[0], 61.0)
    assert store.batch(batch_id).cancelled == 1
    assert store.clear("default") == 3
    status = store.batch(batch_id)
    assert (status.total, status.cancelled, status.pending) == (1, 1, 0)
    assert status.finished_at is not None


def test_finished_batches_are_pruned_with_the_jobs(store):
    batch_id, _ = store.create_batch(NewBatch("callbacks"), [], 50.0)
    open_id, _ = store.create_batch(NewBatch("callbacks"), [member()], 50.0)
    store.prune(100.0, 10)
    assert store.batch(batch_id) is None and store.batch(open_id) is not None
    assert [b.id for b in store.batches()] == [open_id]


def test_cancel_with_kill_asks_the_running_members_to_stop(store):
    batch_id, ids = store.create_batch(NewBatch("callbacks", None, **CALLBACKS),
                                       [member() for _ in range(3)], 50.0)
    running = claim(store, limit=2)
    assert store.batch_cancel(batch_id, 101.0, kill=True) is True
    assert sorted(store.cancel_requests("s1")) == sorted((j.id, j.attempt) for j in running)
    assert store.get(ids[2]).state == "cancelled"
    store.settle("s1", [end(j, "cancelled", at=102.0, error="cancelled") for j in running])
    status = store.batch(batch_id)
    assert (status.cancelled, status.finished_at) == (3, 102.0)
    assert [name for name, _ in callbacks(store, ids[-1])] == ["cb:finally"]


def test_a_cancelled_batchs_member_back_in_its_queue_is_cancelled(store):
    """A member running when its batch was cancelled that comes back by a rescue or a retry
    is cancelled (it would have been, pending); one an operator retries runs again."""
    batch_id, ids = store.create_batch(NewBatch("callbacks", None, **CALLBACKS),
                                       [member() for _ in range(3)], 50.0)
    dies, retries, fails = claim(store, limit=3)
    store.settle("s1", [end(fails, "failed", at=101.0, error="boom")])
    assert store.batch(batch_id).cancelled_at == 101.0
    store.settle("s1", [end(retries, "pending", at=102.0, available_at=102.0, error="again")])
    assert store.get(retries.id).state == "cancelled"
    store.rescue(200.0, owner="s1")
    assert store.get(dies.id).state == "cancelled" and claim(store, now=201.0) == []
    status = store.batch(batch_id)
    assert (status.failed, status.cancelled, status.finished_at) == (1, 2, 200.0)
    assert store.retry_failed([fails.id], 202.0) == 1  # an operator's retry runs
    (again,) = claim(store, now=203.0)
    assert again.id == fails.id
