"""Schedule ticks through the storage contract, on memory, SQLite and PostgreSQL: a tick's
row is written once, by the first caller, with its job in the same transaction; the others
get "taken"; overlap = skip holds a tick back while the previous tick's job lives; pruning
keeps what catch-up and overlap read."""

from __future__ import annotations

import orjson
import pytest

from runtime.storage import NewJob, Outcome, open_storage
from runtime.storage.ticks import NewTick

LEASE = 30.0


def job(name="jobs.examples:add", at=100.0, **extra) -> NewJob:
    return NewJob("default", name, orjson.dumps([[1, 2], {}]), at,
                  options=orjson.dumps({"scheduled_at": at}), **extra)


def tick(schedule="s", at=100.0, skip=False, missed=0, with_job=True) -> NewTick:
    return NewTick(schedule, at, job(at=at) if with_job else None, skip, missed)


def test_a_tick_is_enqueued_once_and_a_second_call_loses(store):
    (first,) = store.enqueue_ticks([tick(at=100.0)], 100.5)
    assert first.outcome == "enqueued" and first.job_id is not None
    assert store.enqueue_ticks([tick(at=100.0)], 100.6) == [("taken", None)]
    record = store.get(first.job_id)
    assert (record.name, record.state, record.options["scheduled_at"]) == (
        "jobs.examples:add", "pending", 100.0)
    assert store.counts(200.0)["default"]["pending"] == 1  # the counters saw the job
    last = store.last_ticks(["s", "other"])
    assert list(last) == ["s"]
    assert last["s"].to_dict() == {"schedule": "s", "tick_at": 100.0, "outcome": "enqueued",
                                   "job_id": first.job_id, "job_state": "pending",
                                   "missed": 0, "created_at": 100.5}


def test_ticks_of_one_call_are_recorded_in_order(store):
    results = store.enqueue_ticks([tick(at=1.0), tick(at=2.0), tick("t", at=1.0),
                                   tick(at=1.0)], 3.0)
    assert [r.outcome for r in results] == ["enqueued", "enqueued", "enqueued", "taken"]
    assert len({r.job_id for r in results[:3]}) == 3
    assert store.last_ticks(["s", "t"])["s"].tick_at == 2.0


def test_overlap_skip_holds_a_tick_back_while_the_previous_job_lives(store):
    (a,) = store.enqueue_ticks([tick(at=10.0, skip=True)], 10.0)
    (b,) = store.enqueue_ticks([tick(at=20.0, skip=True)], 20.0)
    assert b == ("skipped", None)  # a is pending
    (claimed,) = store.claim("s1", ["default"], 1, 50.0 + LEASE, 50.0)
    assert claimed.id == a.job_id
    (c,) = store.enqueue_ticks([tick(at=30.0, skip=True)], 30.0)
    assert c.outcome == "skipped"  # a runs
    (d,) = store.enqueue_ticks([tick(at=31.0, skip=False)], 31.0)
    assert d.outcome == "enqueued"  # overlap = allow
    store.settle("s1", [Outcome(a.job_id, 1, "succeeded", 52.0, queue="default",
                                name="jobs.examples:add")])
    (e,) = store.enqueue_ticks([tick(at=40.0, skip=True)], 40.0)
    assert e.outcome == "skipped"  # d, the latest earlier tick with a job, is pending
    store.cancel(d.job_id, 41.0)
    (f,) = store.enqueue_ticks([tick(at=50.0, skip=True)], 50.0)
    assert f.outcome == "enqueued"
    last = store.last_ticks(["s"])["s"]
    assert (last.outcome, last.job_id, last.job_state) == ("enqueued", f.job_id, "pending")


def test_a_skipped_tick_is_skipped_for_every_caller(store):
    store.enqueue_ticks([tick(at=10.0, skip=True)], 10.0)
    assert store.enqueue_ticks([tick(at=20.0, skip=True)], 20.0)[0].outcome == "skipped"
    assert store.enqueue_ticks([tick(at=20.0, skip=True)], 20.1)[0].outcome == "taken"


def test_missed_ticks_are_a_row_without_a_job(store):
    (m,) = store.enqueue_ticks([tick(at=5.0, missed=4, with_job=False)], 9.0)
    assert m == ("missed", None)
    (r,) = store.enqueue_ticks([tick(at=6.0, missed=2)], 9.0)
    assert r.outcome == "enqueued"
    assert store.enqueue_ticks([tick(at=5.0)], 9.5) == [("taken", None)]
    record = store.last_ticks(["s"])["s"]
    assert (record.tick_at, record.missed) == (6.0, 2)


def test_a_unique_job_held_gives_its_holder(store):
    held = store.enqueue([job(unique_key="only-one")])[0]
    (t,) = store.enqueue_ticks([NewTick("s", 1.0, job(unique_key="only-one"))], 2.0)
    assert t == ("enqueued", held)


def test_prune_keeps_the_newest_row_and_the_newest_with_a_job(store):
    store.enqueue_ticks([tick(at=1.0, skip=True), tick(at=2.0, skip=True),
                         tick(at=3.0, skip=True), tick(at=4.0, with_job=False, missed=1)], 5.0)
    store.enqueue_ticks([tick("t", at=1.0), tick("t", at=2.0)], 5.0)
    assert store.prune_ticks(100.0, 0) == 0
    # s: 1 enqueued, 2 and 3 skipped, 4 missed -> 1 (newest with a job) and 4 (newest) stay;
    # t: 1 and 2 enqueued -> 2 stays
    assert store.prune_ticks(100.0, 2) == 2
    assert store.prune_ticks(100.0, 2) == 1
    assert store.prune_ticks(100.0, 2) == 0
    assert store.last_ticks(["s"])["s"].tick_at == 4.0
    (again,) = store.enqueue_ticks([tick(at=5.0, skip=True)], 6.0)
    assert again.outcome == "skipped"  # tick 1's job still pending: its row was kept
    assert store.prune_ticks(1.5, 10) == 0  # only rows before `before` go


def test_pruned_jobs_leave_their_tick_without_a_state(store):
    (t,) = store.enqueue_ticks([tick(at=1.0)], 1.0)
    (claimed,) = store.claim("s1", ["default"], 1, 10.0 + LEASE, 10.0)
    store.settle("s1", [Outcome(claimed.id, 1, "succeeded", 11.0, queue="default",
                                name=claimed.name)])
    assert store.prune(20.0, 10) == 1
    record = store.last_ticks(["s"])["s"]
    assert (record.job_id, record.job_state) == (t.job_id, None)
    (again,) = store.enqueue_ticks([tick(at=2.0, skip=True)], 21.0)
    assert again.outcome == "enqueued"


@pytest.fixture(params=["sqlite", "postgres"])
def two_stores(request, tmp_path):
    """Two storage objects on one database, as two supervisors hold them."""
    if request.param == "postgres":
        url, base = request.getfixturevalue("pg_url"), None
    else:
        url, base = "sqlite:///jobs.db", str(tmp_path)
    stores = [open_storage(url, role="supervisor", base_dir=base) for _ in range(2)]
    yield stores
    for store in stores:
        store.close()


def test_two_supervisors_race_for_each_tick(two_stores):
    one, other = two_stores
    won = []
    for at in range(1, 21):
        first, second = (one, other) if at % 2 else (other, one)
        won += first.enqueue_ticks([tick(at=float(at), skip=True)], at)
        won += second.enqueue_ticks([tick(at=float(at), skip=True)], at)
    outcomes = [r.outcome for r in won]
    assert outcomes.count("taken") == 20
    assert outcomes.count("enqueued") == 1 and outcomes.count("skipped") == 19
