"""The storage contract, run against every backend.

A backend joins by adding a param to the `store` fixture; every test here
must then pass unchanged. Times are explicit numbers (`now`), never the clock.
"""

from __future__ import annotations

import select
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime.errors import StorageError
from runtime.storage import NewJob, Outcome

LEASE = 30.0


def new(queue="default", name="jobs.examples:add", args=(1, 2), at=0.0, **extra) -> NewJob:
    return NewJob(queue, name, orjson.dumps([list(args), {}]), at, **extra)


def claim(store, owner="s1", queues=("default",), limit=10, now=100.0, lease=LEASE):
    return store.claim(owner, list(queues), limit, now + lease, now)


def ok(job, at=101.0, result=b"3"):
    return Outcome(job.id, job.attempt, "succeeded", at, result=result)


def state(store, job_id):
    return store.get(job_id).state


# -- enqueue ---------------------------------------------------------------

def test_enqueue_returns_ids_in_order_and_records_the_job(store):
    ids = store.enqueue([new(args=(1, 2)), new(queue="low", args=(3,), priority=4,
                                               options=b'{"tries":5}', batch_id="b1")])
    assert len(ids) == 2 and ids[0] < ids[1]
    first, second = store.get(ids[0]), store.get(ids[1])
    assert (first.queue, first.name, first.args, first.kwargs) == ("default", "jobs.examples:add",
                                                                   [1, 2], {})
    assert (first.state, first.attempts, first.error, first.result) == ("pending", 0, None, None)
    assert (second.queue, second.priority, second.options, second.batch_id) == (
        "low", 4, {"tries": 5}, "b1")
    assert store.get(ids[1] + 1000) is None
    assert store.enqueue([]) == []


# What a bulk insert may share between rows (SQLite binds it once per run of alike jobs).
SHAPES = [dict(), dict(queue="low"), dict(name="jobs.examples:fail"), dict(priority=3),
          dict(options=b'{"tries":2}'), dict(at=50.0), dict(batch_id="b1")]


def test_bulk_enqueue_stores_each_job_as_given_in_order_whatever_its_neighbours(store):
    @settings(max_examples=15, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    # run lengths about SQLite's boundaries: a run shorter than 8 goes in with its
    # neighbours, and a statement takes 250 rows at most
    @given(st.lists(st.tuples(st.integers(0, len(SHAPES) - 1), st.sampled_from([1, 2, 7, 8, 9, 251])),
                    min_size=1, max_size=8))
    def check(runs):
        jobs = [new(args=(len(runs), n), **SHAPES[shape]) for shape, length in runs for n in range(length)]
        before = store.counts(0.0)
        ids = store.enqueue(jobs)
        assert len(ids) == len(jobs) and ids == sorted(set(ids))
        for job_id, job in zip(ids, jobs):
            got = store.get(job_id)
            assert (got.queue, got.name, got.priority, got.available_at, got.batch_id, got.state) == (
                job.queue, job.name, job.priority, job.available_at, job.batch_id, "pending")
            assert [got.args, got.kwargs] == orjson.loads(job.payload)
            assert (got.options or {}) == (orjson.loads(job.options) if job.options else {})
        after = store.counts(0.0)
        for queue in {job.queue for job in jobs}:
            waiting = after[queue]["pending"] + after[queue]["delayed"]
            was = before.get(queue, {}).get("pending", 0) + before.get(queue, {}).get("delayed", 0)
            assert waiting - was == sum(job.queue == queue for job in jobs)
    check()


def test_bulk_enqueue_is_all_or_none(store):
    kept = store.enqueue([new()])
    bad = new()._replace(queue=None)
    with pytest.raises(StorageError):
        store.enqueue([new(args=(5,)), new(args=(6,)), bad, new(args=(7,))])
    assert store.counts(0.0) == {"default": {"pending": 1, "delayed": 0, "running": 0,
                                             "succeeded": 0, "failed": 0, "cancelled": 0}}
    # The failed batch used no ids: the next job follows the kept one.
    assert store.enqueue([new()]) == [kept[0] + 1]


def test_ids_are_never_reused(store):
    first = store.enqueue([new(), new()])
    assert store.clear("default") == 2
    assert store.enqueue([new()])[0] > first[1]


def test_unique_key_returns_the_live_job(store):
    a, b, c = store.enqueue([new(unique_key="k"), new(unique_key="k"), new(unique_key="other")])
    assert a == b != c
    assert store.enqueue([new(unique_key="k")]) == [a]
    [job] = claim(store, limit=1)
    assert job.id == a
    assert store.enqueue([new(unique_key="k")]) == [a]  # still held while running
    store.settle("s1", [ok(job)])
    d = store.enqueue([new(unique_key="k")])[0]
    assert d not in (a, b, c)  # released once the job ended


def test_a_key_held_past_unique_for_is_free_for_a_new_job(store):
    past, future = time.time() - 1.0, time.time() + 3600.0
    [old] = store.enqueue([new(unique_key="k", unique_expires=past)])
    [held] = store.enqueue([new(unique_key="h", unique_expires=future)])
    [fresh] = store.enqueue([new(unique_key="k")])
    assert fresh != old and store.get(old).unique_key is None and state(store, old) == "pending"
    assert store.get(fresh).unique_key == "k" and store.enqueue([new(unique_key="k")]) == [fresh]
    assert store.enqueue([new(unique_key="h")]) == [held]


def test_unique_at_start_frees_the_key_when_the_job_starts(store):
    [first] = store.enqueue([new(unique_key="k", unique_at_start=True)])
    assert store.enqueue([new(unique_key="k", unique_at_start=True)]) == [first]
    [job] = claim(store, limit=1)
    assert job.id == first and store.get(first).unique_key is None
    [second] = store.enqueue([new(unique_key="k", unique_at_start=True)])
    assert second != first and store.enqueue([new(unique_key="k")]) == [second]


def test_notify_wakes_a_listener(store):
    listener = store.listener()
    try:
        if listener.fileno() < 0:
            pytest.skip("no wake-up sockets on this platform")
        store.notify()
        readable, _, _ = select.select([listener], [], [], 5.0)
        assert readable
        listener.drain()
        assert select.select([listener], [], [], 0)[0] == []
    finally:
        listener.close()


# -- claim order -----------------------------------------------------------

def test_queues_are_claimed_in_strict_order(store):
    low = store.enqueue([new(queue="low", priority=9)])
    high = store.enqueue([new(queue="high"), new(queue="high")])
    default = store.enqueue([new(queue="default")])
    got = claim(store, queues=["high", "default", "low"], limit=3)
    assert [j.id for j in got] == high + default
    assert [j.id for j in claim(store, queues=["high", "default", "low"])] == low


def test_priority_then_age_then_id_within_a_queue(store):
    ids = store.enqueue([new(at=5.0), new(priority=2, at=9.0), new(at=1.0), new(priority=2, at=9.0),
                         new(priority=-1)])
    got = claim(store, limit=10)
    assert [j.id for j in got] == [ids[1], ids[3], ids[2], ids[0], ids[4]]


def test_limit_and_other_queues_are_respected(store):
    store.enqueue([new() for _ in range(5)] + [new(queue="elsewhere")])
    assert len(claim(store, limit=3)) == 3
    assert len(claim(store, limit=10)) == 2
    assert claim(store) == []
    assert store.claim("s1", ["default"], 0, 200.0, 100.0) == []


def test_delayed_jobs_wait_for_available_at(store):
    [late] = store.enqueue([new(at=150.0)])
    [soon] = store.enqueue([new(queue="high", at=120.0)])
    assert claim(store, queues=["high", "default"], now=100.0) == []
    assert store.next_due(["high", "default"]) == 120.0
    assert store.next_due(["default"]) == 150.0
    assert store.next_due(["nothing"]) is None and store.next_due([]) is None
    counts = store.counts(100.0)
    assert counts["default"]["delayed"] == 1 and counts["default"]["pending"] == 0
    assert store.counts(150.0)["default"]["pending"] == 1
    assert [j.id for j in claim(store, queues=["high", "default"], now=150.0)] == [soon, late]
    assert store.next_due(["high", "default"]) is None


def test_claim_sets_owner_lease_attempt_and_start(store):
    [job_id] = store.enqueue([new(options=b'{"timeout":5}')])
    [job] = claim(store, owner="s1", now=100.0)
    assert (job.id, job.queue, job.name, job.attempt, job.options) == (
        job_id, "default", "jobs.examples:add", 1, b'{"timeout":5}')
    assert orjson.loads(job.payload) == [[1, 2], {}]
    record = store.get(job_id)
    assert (record.state, record.owner, record.lease_expires, record.attempts,
            record.started_at) == ("running", "s1", 100.0 + LEASE, 1, 100.0)
    assert claim(store, owner="s2") == []


# -- settle ----------------------------------------------------------------

def test_settle_succeeded_stores_the_result(store):
    store.enqueue([new()])
    [job] = claim(store)
    store.settle("s1", [ok(job, at=101.0, result=b'{"sum":3}')])
    record = store.get(job.id)
    assert (record.state, record.result, record.finished_at, record.owner,
            record.lease_expires, record.error) == (
        "succeeded", {"sum": 3}, 101.0, None, None, None)


def test_settle_failed_goes_to_the_failed_store(store):
    store.enqueue([new()])
    [job] = claim(store)
    store.settle("s1", [Outcome(job.id, 1, "failed", 102.0, error="ValueError: x",
                                traceback="Traceback ...")])
    record = store.get(job.id)
    assert (record.state, record.error, record.traceback, record.finished_at, record.owner) == (
        "failed", "ValueError: x", "Traceback ...", 102.0, None)
    assert [r.id for r in store.failed()] == [job.id]


def test_settle_pending_retries_later_keeping_the_attempt(store):
    store.enqueue([new()])
    [job] = claim(store, now=100.0)
    store.settle("s1", [Outcome(job.id, 1, "pending", 101.0, error="boom", traceback="tb",
                                available_at=130.0)])
    record = store.get(job.id)
    assert (record.state, record.attempts, record.available_at, record.error, record.owner,
            record.lease_expires) == ("pending", 1, 130.0, "boom", None, None)
    assert claim(store, now=129.0) == []
    [again] = claim(store, now=130.0)
    assert again.attempt == 2
    # A release with no error replaces the old one; available_at defaults to `at`.
    store.settle("s1", [Outcome(job.id, 2, "pending", 140.0)])
    record = store.get(job.id)
    assert (record.error, record.traceback, record.available_at) == (None, None, 140.0)


def test_runs_that_raised_are_counted_across_attempts(store):
    """max_exceptions: settles of runs that raised add one to the job's exceptions, which the
    next claim carries; other settles, and stale ones, add nothing."""
    store.enqueue([new()])
    [job] = claim(store)
    assert job.exceptions == 0
    store.settle("s1", [Outcome(job.id, 1, "pending", 101.0, error="E", exception=True)])
    [job] = claim(store, now=101.0)
    assert (job.attempt, job.exceptions) == (2, 1)
    store.settle("s1", [Outcome(job.id, 2, "pending", 102.0, error="timeout")])  # not raised
    [job] = claim(store, now=102.0)
    store.settle("s1", [Outcome(job.id, 2, "failed", 103.0, error="stale", exception=True)])
    store.settle("s1", [Outcome(job.id, 3, "failed", 103.0, error="E", exception=True)])
    record = store.get(job.id)
    assert (record.state, record.attempts, record.exceptions) == ("failed", 3, 2)
    assert record.to_dict()["exceptions"] == 2


def test_a_job_failed_for_good_gets_its_failure_hook_enqueued_once(store):
    hooked = orjson.dumps({"on_failure": "jobs.examples:fail_with_hook_failed", "timeout": 5})
    a, b = store.enqueue([new(args=("p",), options=hooked, queue="emails", priority=3), new()])
    jobs = claim(store, queues=["emails", "default"])
    store.settle("s1", [Outcome(j.id, 1, "failed", 150.0, error="E") for j in jobs])
    store.settle("s1", [Outcome(a, 1, "failed", 151.0, error="stale")])  # changes nothing
    [hook] = [i for i in range(b + 1, b + 10) if store.get(i) is not None]
    record = store.get(hook)
    assert (record.name, record.queue, record.state, record.priority, record.available_at) == \
        ("jobs.examples:fail_with_hook_failed", "emails", "pending", 3, 150.0)
    assert record.options == {"tries": 1, "timeout": 5}
    assert record.args == [{"id": a, "name": "jobs.examples:add", "queue": "emails", "args": ["p"],
                            "kwargs": {}, "attempts": 1, "error": "E"}] and record.kwargs == {}
    # A retry (pending) and a success make no hook; neither does a job without one.
    [c] = store.enqueue([new(options=hooked)])
    [job] = claim(store, queues=["emails"], now=200.0)
    assert job.id == hook
    store.settle("s1", [ok(job)])
    [job] = claim(store, now=201.0)
    store.settle("s1", [Outcome(c, 1, "pending", 202.0, available_at=300.0)])
    assert store.get(c + 1) is None and store.counts(250.0)["default"]["delayed"] == 1


def test_undo_attempt_returns_an_unstarted_job(store):
    store.enqueue([new()])
    [job] = claim(store)
    store.settle("s1", [Outcome(job.id, 1, "pending", 101.0, available_at=101.0,
                                undo_attempt=True)])
    assert store.get(job.id).attempts == 0
    [again] = claim(store, now=101.0)
    assert again.attempt == 1


def test_exchange_settles_then_claims_in_one_call(store):
    store.enqueue([new(), new()])
    [first] = claim(store, limit=1)
    got = store.exchange("s1", [ok(first)], ["default"], 5, 200.0, 101.0)
    assert state(store, first.id) == "succeeded"
    assert [j.attempt for j in got] == [1] and got[0].id != first.id
    assert store.exchange("s1", iter(()), ["default"], 0, 0.0, 0.0) == []


def test_settle_is_fenced_by_attempt_owner_and_state(store):
    store.enqueue([new()])
    [job] = claim(store, owner="s1")
    store.settle("s2", [ok(job)])  # another owner
    store.settle("s1", [Outcome(job.id, 2, "succeeded", 101.0)])  # a future attempt
    assert state(store, job.id) == "running"
    store.settle("s1", [Outcome(job.id, 1, "pending", 101.0, available_at=101.0)])
    [again] = claim(store, owner="s1", now=102.0)
    store.settle("s1", [Outcome(job.id, 1, "failed", 103.0, error="stale")])  # the old run
    record = store.get(job.id)
    assert (record.state, record.attempts, record.error) == ("running", 2, None)
    store.settle("s1", [ok(again, at=104.0)])
    store.settle("s1", [Outcome(job.id, 2, "failed", 105.0, error="late duplicate")])
    assert (state(store, job.id), store.get(job.id).error) == ("succeeded", None)


def test_an_unknown_outcome_state_is_a_programming_error(store):
    store.enqueue([new()])
    [job] = claim(store)
    with pytest.raises(ValueError):
        store.settle("s1", [Outcome(job.id, 1, "running", 101.0)])
    assert state(store, job.id) == "running"


# -- leases ----------------------------------------------------------------

def test_heartbeat_renews_leases_and_records_the_supervisor(store):
    store.enqueue([new(), new(), new()])
    mine = claim(store, owner="s1", limit=2)
    claim(store, owner="s2", limit=1)
    assert store.heartbeat("s1", "host-a", 42, 90.0, {"workers": [{"pid": 7}]}, 110.0, 140.0) == 2
    assert {store.get(j.id).lease_expires for j in mine} == {140.0}
    [row] = store.supervisors()
    assert (row.owner, row.host, row.pid, row.started_at, row.heartbeat_at, row.info) == (
        "s1", "host-a", 42, 90.0, 110.0, {"workers": [{"pid": 7}]})
    store.heartbeat("s1", "host-a", 42, 90.0, {}, 120.0, 150.0)
    assert [(r.heartbeat_at, r.info) for r in store.supervisors()] == [(120.0, {})]
    store.heartbeat("s0", "host-b", 43, 80.0, {}, 120.0, 150.0)
    assert [r.owner for r in store.supervisors()] == ["s0", "s1"]
    store.remove_supervisor("s1")
    assert [r.owner for r in store.supervisors()] == ["s0"]


def test_heartbeat_renews_only_the_jobs_the_supervisor_says_it_holds(store):
    store.enqueue([new(), new(), new()])
    held, lost = claim(store, owner="s1", limit=2)
    assert store.heartbeat("s1", "host-a", 42, 90.0, {}, 110.0, 140.0, held=[held.id]) == 1
    assert store.get(held.id).lease_expires == 140.0
    assert store.get(lost.id).lease_expires != 140.0  # expires, and is rescued
    assert store.heartbeat("s1", "host-a", 42, 90.0, {}, 111.0, 141.0, held=[]) == 0


def test_rescue_returns_expired_leases_only(store):
    store.enqueue([new(), new()])
    [stale] = claim(store, owner="s1", limit=1, now=100.0, lease=10.0)
    [fresh] = claim(store, owner="s2", limit=1, now=100.0, lease=60.0)
    assert store.rescue(110.0) == 0  # expires at 110: not yet expired
    assert store.rescue(111.0) == 1
    record = store.get(stale.id)
    assert (record.state, record.owner, record.lease_expires, record.attempts) == (
        "pending", None, None, 1)
    assert record.error == ("lease expired: its supervisor s1 stopped renewing it; "
                            "returned to the queue")
    assert state(store, fresh.id) == "running"
    store.settle("s1", [ok(stale)])  # the rescued run can no longer settle
    [again] = claim(store, owner="s2", now=112.0)
    assert (again.id, again.attempt) == (stale.id, 2)


def test_rescue_by_owner_takes_a_dead_supervisors_jobs(store):
    store.enqueue([new(), new(), new()])
    dead = claim(store, owner="dead", limit=2)
    [alive] = claim(store, owner="alive", limit=1)
    assert store.rescue(101.0, owner="dead") == 2
    for job in dead:
        record = store.get(job.id)
        assert (record.state, record.error) == (
            "pending", "its supervisor dead died; returned to the queue")
    assert state(store, alive.id) == "running"


# -- queries and admin -----------------------------------------------------

def fail_all(store, ids_at):
    jobs = claim(store, limit=100)
    by_id = {j.id: j for j in jobs}
    store.settle("s1", [Outcome(i, by_id[i].attempt, "failed", at, error=f"e{i}")
                        for i, at in ids_at])


def test_counts_per_queue_and_state(store):
    store.enqueue([new(), new(), new(at=500.0), new(queue="low"), new(queue="low")])
    [a, b] = claim(store, limit=2)
    store.settle("s1", [ok(a), Outcome(b.id, 1, "failed", 101.0, error="x")])
    [c] = claim(store, queues=["low"], limit=1)
    store.cancel(c.id + 1, 101.0)
    assert store.counts(100.0) == {
        "default": {"pending": 0, "delayed": 1, "running": 0, "succeeded": 1, "failed": 1,
                    "cancelled": 0},
        "low": {"pending": 0, "delayed": 0, "running": 1, "succeeded": 0, "failed": 0,
                "cancelled": 1},
    }


def test_failed_list_is_newest_first_and_limited(store):
    ids = store.enqueue([new(), new(), new()])
    fail_all(store, [(ids[0], 110.0), (ids[1], 130.0), (ids[2], 120.0)])
    assert [r.id for r in store.failed()] == [ids[1], ids[2], ids[0]]
    assert [r.id for r in store.failed(limit=1)] == [ids[1]]
    assert store.failed()[0].error == f"e{ids[1]}"


def test_retry_failed_by_id_and_all(store):
    ids = store.enqueue([new(), new(), new()])
    fail_all(store, [(i, 110.0) for i in ids])
    assert store.retry_failed([ids[0], 9999], 200.0) == 1
    record = store.get(ids[0])
    assert (record.state, record.attempts, record.available_at, record.finished_at) == (
        "pending", 0, 200.0, None)
    assert store.retry_failed(None, 300.0) == 2
    assert [store.get(i).state for i in ids] == ["pending"] * 3
    assert store.failed() == [] and store.retry_failed(None, 300.0) == 0
    claimed = claim(store, now=300.0)
    assert [j.attempt for j in claimed] == [1, 1, 1]
    # The first run since an operator's retry says so (for its events); a later one not.
    assert [j.retried_at for j in claimed] == [200.0, 300.0, 300.0]
    store.settle("s1", [Outcome(j.id, j.attempt, "pending", 301.0, available_at=301.0)
                        for j in claimed])
    assert [j.retried_at for j in claim(store, now=302.0)] == [None, None, None]
    assert claim(store, now=303.0) == []


def test_retry_failed_keeps_unique_keys_unique(store):
    [old] = store.enqueue([new(unique_key="k")])
    fail_all(store, [(old, 110.0)])
    [live] = store.enqueue([new(unique_key="k")])
    assert store.retry_failed([old], 200.0) == 0
    assert (state(store, old), state(store, live)) == ("failed", "pending")


def test_forget_and_flush_delete_failed_jobs_only(store):
    ids = store.enqueue([new(), new(), new(), new()])
    fail_all(store, [(ids[0], 110.0), (ids[1], 110.0), (ids[2], 110.0)])
    [pending] = store.enqueue([new()])
    assert store.forget(ids[0]) is True
    assert store.get(ids[0]) is None and store.forget(ids[0]) is False
    assert store.forget(pending) is False and store.forget(ids[3]) is False  # running
    assert store.flush_failed() == 2
    assert store.failed() == [] and store.get(pending).state == "pending"


def test_cancel_ends_pending_and_delayed_jobs_and_marks_running_ones(store):
    now_id, later_id, run_id = store.enqueue([new(), new(at=900.0), new(queue="other")])
    [running] = claim(store, queues=["other"])
    assert store.cancel(now_id, 150.0) == store.cancel(later_id, 150.0) == "pending"
    record = store.get(now_id)
    assert (record.state, record.finished_at) == ("cancelled", 150.0)
    assert store.cancel_requests("s1") == []
    # A running job stays running, marked for its owner, which settles it cancelled.
    assert store.cancel(running.id, 150.0) == "running" and state(store, run_id) == "running"
    assert store.cancel_requests("s1") == [(run_id, 1)] and store.cancel_requests("s2") == []
    store.settle("s1", [Outcome(run_id, 1, "cancelled", 151.0, error="cancelled while running")])
    record = store.get(run_id)
    assert (record.state, record.finished_at, record.error, record.owner) == \
        ("cancelled", 151.0, "cancelled while running", None)
    assert store.cancel_requests("s1") == []
    # Ended jobs are left as they are; an unknown id is None.
    assert store.cancel(now_id, 152.0) == "cancelled" and store.get(now_id).finished_at == 150.0
    assert store.cancel(12345, 151.0) is None
    assert claim(store, now=1000.0) == []


@pytest.mark.parametrize("put_back", ["retry", "release", "rescue"])
def test_a_running_job_asked_to_cancel_is_cancelled_when_put_back_to_wait(store, put_back):
    """Its supervisor had not seen the request yet: the job must not run again."""
    [job_id, other] = store.enqueue([new(), new()])
    jobs = claim(store, limit=2)
    assert store.cancel(job_id, 120.0) == "running"
    if put_back == "rescue":
        store.rescue(130.0, owner="s1")
    else:
        store.settle("s1", [Outcome(j.id, 1, "pending", 130.0, error="E", available_at=140.0,
                                    undo_attempt=put_back == "release") for j in jobs])
    assert (state(store, job_id), state(store, other)) == ("cancelled", "pending")
    assert store.get(job_id).finished_at == 130.0
    assert [j.id for j in claim(store, now=200.0)] == [other]


def test_settling_a_failed_job_that_was_asked_to_cancel_keeps_it_failed(store):
    [job_id] = store.enqueue([new()])
    [job] = claim(store)
    store.cancel(job_id, 120.0)
    store.settle("s1", [Outcome(job_id, 1, "failed", 130.0, error="E")])
    assert state(store, job_id) == "failed"
    assert store.retry_failed([job_id], 140.0) == 1 and store.cancel_requests("s1") == []
    [again] = claim(store, now=150.0)
    store.settle("s1", [Outcome(job_id, again.attempt, "pending", 160.0, available_at=170.0)])
    assert state(store, job_id) == "pending"  # the old request died with the retry


def test_clear_deletes_pending_jobs_of_one_queue(store):
    keep = store.enqueue([new(queue="other")])
    store.enqueue([new(), new(at=900.0), new()])
    [running] = claim(store, limit=1)
    assert store.clear("default") == 2
    assert store.counts(100.0)["default"]["running"] == 1
    assert store.get(keep[0]).state == "pending"
    assert store.clear("default") == 0
    store.settle("s1", [ok(running)])
    assert state(store, running.id) == "succeeded"


def test_oldest_pending_is_the_longest_waiting_due_job(store):
    assert store.oldest_pending(100.0) is None
    store.enqueue([new(queue="other", at=10.0)])
    [running] = claim(store, queues=["other"])  # running: not waiting
    store.enqueue([new(at=80.0), new(queue="low", at=50.0), new(at=500.0)])
    store.enqueue([new(queue="bad", at=20.0)])
    [failed] = claim(store, queues=["bad"])
    store.settle("s1", [Outcome(failed.id, 1, "failed", 30.0, error="x")])
    assert state(store, failed.id) == "failed" and state(store, running.id) == "running"
    assert store.oldest_pending(100.0) == 50.0  # any queue
    assert store.oldest_pending(50.0) == 50.0  # due at exactly now
    assert store.oldest_pending(49.0) is None  # delayed jobs are not waiting yet
    store.cancel(store.enqueue([new(at=1.0)])[0], 60.0)
    assert store.oldest_pending(100.0) == 50.0


# -- retention -------------------------------------------------------------

def test_prune_deletes_ended_jobs_oldest_first_up_to_limit(store):
    ids = store.enqueue([new() for _ in range(4)])
    jobs = {j.id: j for j in claim(store, limit=4)}
    store.settle("s1", [ok(jobs[ids[0]], at=110.0),
                        Outcome(ids[1], 1, "failed", 120.0, error="x"),
                        ok(jobs[ids[2]], at=110.0)])
    [cancelled] = store.enqueue([new(at=900.0)])
    store.cancel(cancelled, 105.0)
    [old_pending] = store.enqueue([new(queue="low", at=1.0)])
    running = ids[3]
    assert store.prune(200.0, 0) == 0 and store.prune(200.0, -1) == 0
    assert store.prune(1000.0, 1) == 1 and store.get(cancelled) is None  # oldest first
    assert store.prune(110.0, 10) == 0  # finished_at must be earlier than `before`
    assert store.prune(115.0, 1) == 1  # of two finished at 110, the lower id first
    assert store.get(ids[0]) is None and state(store, ids[2]) == "succeeded"
    assert store.prune(1e12, 10) == 2  # the failed-jobs store ages out too
    assert store.failed() == [] and store.get(ids[2]) is None
    assert (state(store, old_pending), state(store, running)) == ("pending", "running")
    assert store.prune(1e12, 10) == 0
    assert store.enqueue([new()])[0] > old_pending  # ids are never reused
