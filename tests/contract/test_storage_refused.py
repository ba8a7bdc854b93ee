"""`Storage.refused`: how many outcomes the last exchange or settle refused as stale
(fenced by attempt and owner), the same on every backend; the supervisor logs it."""

from __future__ import annotations

from runtime.storage import NewJob, Outcome


def new() -> NewJob:
    return NewJob("default", "jobs.examples:add", b'[[1,2],{}]', 0.0)


def claim(store, owner, now=100.0, lease=10.0, limit=10):
    return store.exchange(owner, [], ["default"], limit, now + lease, now)


def outcome(job, state, attempt=None, at=120.0):
    extra = {"available_at": 200.0} if state == "pending" else {}
    return Outcome(job.id, job.attempt if attempt is None else attempt, state, at,
                   queue=job.queue, name=job.name, **extra)


def test_a_current_batch_refuses_nothing(store):
    store.enqueue([new(), new(), new()])
    a, b, c = claim(store, "s1")
    store.settle("s1", [outcome(a, "succeeded"), outcome(b, "failed"), outcome(c, "pending")])
    assert store.refused == 0
    assert [store.get(j.id).state for j in (a, b, c)] == ["succeeded", "failed", "pending"]


def test_results_of_rescued_runs_are_refused_and_counted(store):
    """The cut host's late acks: its jobs were rescued and claimed again by another
    supervisor; each kind of result of the old runs is refused, the current one kept."""
    store.enqueue([new() for _ in range(5)])
    old = claim(store, "cut", now=100.0, lease=10.0)
    assert store.rescue(111.0) == 5
    again = claim(store, "other", now=112.0, lease=30.0, limit=4)  # the fifth waits, pending
    kinds = ["succeeded", "failed", "pending", "cancelled", "succeeded"]
    claimed = store.exchange("cut", [outcome(j, k) for j, k in zip(old, kinds)], ["default"], 0,
                             150.0, 120.0)
    assert (claimed, store.refused) == ([], 5)
    assert all(store.get(j.id).state == "running" for j in again)
    store.settle("other", [outcome(again[0], "succeeded"), outcome(again[1], "succeeded", attempt=1)])
    assert store.refused == 1  # a wrong attempt is a stale run too
    store.settle("other", [outcome(again[0], "succeeded")])
    assert store.refused == 1  # reported twice: the second is refused
    claim(store, "other", now=113.0)
    assert store.refused == 0  # a claim alone settles and refuses nothing
