"""Gates through the storage contract, on memory, SQLite and PostgreSQL: without_overlapping
(one job per overlap key runs at a time, the others wait in order) and rate_limit (at most
rate_max starts of a rate key in any rate_period), with the jobs held back using no attempt
and holding nothing else up."""

from __future__ import annotations

import orjson

from runtime.storage import NewJob, Outcome

LEASE = 30.0


def new(queue="default", at=0.0, overlap=None, rate=None, most=2, period=10.0, **extra) -> NewJob:
    return NewJob(queue, "jobs.examples:add", orjson.dumps([[1, 2], {}]), at, overlap_key=overlap,
                  rate_key=rate, rate_max=most if rate else 0, rate_period=period if rate else 0.0,
                  **extra)


def claim(store, queues=("default",), limit=10, now=100.0, owner="s1"):
    return store.claim(owner, list(queues), limit, now + LEASE, now)


def ended(job, state="succeeded", at=101.0, **extra):
    return Outcome(job.id, job.attempt, state, at, queue=job.queue, name=job.name,
                   overlap_key=job.overlap_key, rate_key=job.rate_key, **extra)


def ids(jobs):
    return [job.id for job in jobs]


# -- without_overlapping --------------------------------------------------------------

def test_one_job_per_overlap_key_runs_and_the_next_follows_however_it_ends(store):
    a, b, c, d, other = store.enqueue([new(overlap="k", at=1), new(overlap="k", at=2),
                                       new(overlap="k", at=3), new(overlap="k", at=4),
                                       new(overlap="j", at=5)])
    first = claim(store)
    assert ids(first) == [a, other]
    assert first[0].overlap_key == "k"
    assert store.get(b).attempts == 0  # waiting uses no attempt
    assert claim(store, now=101) == []
    assert store.next_due(["default"]) is None  # held-back jobs are not due
    store.settle("s1", [ended(first[0], "failed", error="boom")])
    second = claim(store, now=102)
    assert ids(second) == [b]
    store.settle("s1", [ended(second[0], "pending", at=103, available_at=103.5, error="retry")])
    third = claim(store, now=104)
    assert ids(third) == [c]  # b's retry waits behind c, which was due first
    assert store.rescue(200.0) == 2  # c's lease expired (and other's): k is free again
    assert ids(claim(store, now=201)) == [c, other]  # c is still first (due at 3)
    assert store.cancel(b, 202.0) == "pending"
    store.settle("s1", [ended(store_claimed(store, c), "succeeded", at=203)])
    assert ids(claim(store, now=204)) == [d]


def store_claimed(store, job_id):
    """The ClaimedJob of a running job, as its supervisor holds it."""
    record = store.get(job_id)
    from runtime.storage.base import ClaimedJob
    return ClaimedJob(record.id, record.queue, record.name, b"", record.attempts, None,
                      overlap_key=record.overlap_key, rate_key=record.rate_key)


def test_jobs_behind_a_busy_key_hold_up_nothing_else(store):
    store.enqueue([new(overlap="k", at=1, priority=9) for _ in range(5)])
    plain = store.enqueue([new(at=2), new(at=3)])
    got = claim(store, limit=10)
    assert len(got) == 3 and ids(got)[1:] == plain


def test_the_first_job_of_a_key_goes_first_even_when_enqueued_later(store):
    late, early = store.enqueue([new(overlap="k", at=50), new(overlap="k", at=5)])
    assert ids(claim(store, now=60)) == [early]
    assert store.get(late).attempts == 0


def test_cancel_and_clear_pass_the_turn_on(store):
    a, b, c = store.enqueue([new(overlap="k", at=1), new(overlap="k", at=2),
                             new(queue="other", overlap="k", at=3)])
    assert store.cancel(a, 50.0) == "pending"
    assert store.clear("default") == 1  # b
    assert ids(claim(store, queues=("other",))) == [c]


def test_a_retried_failed_job_waits_for_its_turn(store):
    a, b = store.enqueue([new(overlap="k", at=1), new(overlap="k", at=2)])
    (job,) = claim(store)
    store.settle("s1", [ended(job, "failed", error="x")])
    (second,) = claim(store, now=102)
    assert second.id == b
    assert store.retry_failed([a], 103.0) == 1
    assert claim(store, now=104) == []
    store.settle("s1", [ended(second, at=105)])
    assert ids(claim(store, now=106)) == [a]


def test_held_back_jobs_are_counted_as_pending_or_delayed(store):
    store.enqueue([new(overlap="k", at=1), new(overlap="k", at=2), new(overlap="k", at=130)])
    claim(store)
    counts = store.counts(101.0)["default"]
    assert (counts["running"], counts["pending"], counts["delayed"]) == (1, 1, 1)


# -- rate_limit -------------------------------------------------------------------------

def test_at_most_rate_max_starts_in_any_period_and_the_supervisor_knows_when(store):
    jobs = store.enqueue([new(rate="r", at=1, most=2, period=10.0) for _ in range(5)])
    starts = []
    for now in (100.0, 100.5, 101.0, 105.0, 109.9, 110.0, 110.5, 111.0, 120.0, 121.0):
        got = claim(store, now=now)
        assert len(got) <= 1  # one job of a rate key per claim
        starts += [(now, job.id) for job in got]
        if now == 101.0:
            assert store.next_due(["default"]) == 110.0  # the first start's period ends
    assert starts == [(100.0, jobs[0]), (100.5, jobs[1]), (110.0, jobs[2]), (110.5, jobs[3]),
                      (120.0, jobs[4])]
    assert all(store.get(i).attempts == 1 for i in jobs)


def test_a_limited_key_holds_up_no_other_key_queue_or_job(store):
    store.enqueue([new(rate="r", at=1, most=1) for _ in range(3)])
    u1 = store.enqueue([new(rate="r|user1", at=2, most=1)])
    plain = store.enqueue([new(at=3)])
    other = store.enqueue([new(queue="other", rate="r", at=4, most=1)])
    got = claim(store, queues=("default", "other"))
    assert len(got) == 3 and ids(got)[1:] == u1 + plain
    assert claim(store, queues=("default", "other"), now=101) == []
    # `other`'s job shares key r: it waits its turn behind the earlier ones
    assert store.get(other[0]).attempts == 0


def test_the_rate_turn_skips_jobs_waiting_for_their_overlap_key(store):
    a, b, c = store.enqueue([new(rate="r", overlap="e1", at=1, most=5),
                             new(rate="r", overlap="e1", at=2, most=5),
                             new(rate="r", overlap="e2", at=3, most=5)])
    assert ids(claim(store, now=100)) == [a]
    assert ids(claim(store, now=100.1)) == [c]  # b waits for e1, c goes by
    assert claim(store, now=100.2) == []
    store.settle("s1", [ended(store_claimed(store, a), at=100.3)])
    assert ids(claim(store, now=100.4)) == [b]


def test_a_retry_of_a_limited_job_waits_for_a_slot_like_any(store):
    a, b = store.enqueue([new(rate="r", at=1, most=1, period=10.0) for _ in range(2)])
    (job,) = claim(store, now=100)
    store.settle("s1", [ended(job, "pending", at=101, available_at=101, error="again")])
    assert claim(store, now=105) == []
    assert store.next_due(["default"]) == 110.0
    assert ids(claim(store, now=110)) == [b]  # due at 1, before a's retry (due at 101)
    assert claim(store, now=115) == []
    assert ids(claim(store, now=120)) == [a]


def test_enqueue_many_of_gated_jobs_returns_ids_in_order(store):
    got = store.enqueue([new(overlap="k"), new(rate="r"), new(), new(overlap="k", rate="r")])
    assert got == sorted(got) and len(set(got)) == 4
