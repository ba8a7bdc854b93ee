"""The dashboard's storage verbs on memory, SQLite and PostgreSQL: keyset pages of jobs by
every filter (each backend walking its own index), pages of batches, and the per-minute
aggregate rows that supervisors add to and charts read."""

from __future__ import annotations

import orjson

from runtime.storage import NewJob, Outcome
from runtime.storage.browse import MinuteRow, bucket_rows
from runtime.storage.workflows import NewBatch

LEASE = 30.0


def job(queue="default", name="jobs.examples:add", at=0.0) -> NewJob:
    return NewJob(queue, name, orjson.dumps([[1, 2], {}]), at)


def ids(records) -> list[int]:
    return [record.id for record in records]


def fill(store) -> dict:
    """Twelve jobs over two queues and three names; some run, fail, succeed, cancel."""
    made = store.enqueue([job("q%d" % (i % 2), "n%d" % (i % 3)) for i in range(12)])
    running = store.claim("s1", ["q0"], 3, 100.0 + LEASE, 100.0)  # 1, 3, 5
    store.settle("s1", [
        Outcome(running[0].id, 1, "failed", 101.0, error="boom", queue="q0", name=running[0].name),
        Outcome(running[1].id, 1, "succeeded", 101.0, queue="q0", name=running[1].name)])
    store.cancel(made[11], 102.0)
    return {"made": made, "failed": running[0].id, "succeeded": running[1].id,
            "running": running[2].id, "cancelled": made[11]}


def test_jobs_pages_newest_first_by_every_filter(store):
    got = fill(store)
    made = got["made"]
    assert ids(store.jobs_page()) == made[::-1]
    assert ids(store.jobs_page(limit=5)) == made[::-1][:5]
    assert ids(store.jobs_page(before=made[7], limit=3)) == [made[6], made[5], made[4]]
    assert ids(store.jobs_page(queue="q1")) == made[1::2][::-1]
    assert ids(store.jobs_page(name="n2", before=made[8])) == [made[5], made[2]]
    assert ids(store.jobs_page(state="failed")) == [got["failed"]]
    assert ids(store.jobs_page(state="succeeded")) == [got["succeeded"]]
    assert ids(store.jobs_page(state="running")) == [got["running"]]
    assert ids(store.jobs_page(state="cancelled")) == [got["cancelled"]]
    pending = [i for i in made if i not in (got["failed"], got["succeeded"], got["running"],
                                            got["cancelled"])]
    assert ids(store.jobs_page(state="pending")) == pending[::-1]
    assert ids(store.jobs_page(state="pending", queue="q0")) == [i for i in pending[::-1]
                                                                 if (i - made[0]) % 2 == 0]
    assert ids(store.jobs_page(state="failed", queue="q1")) == []
    assert ids(store.jobs_page(state="running", name="nope")) == []
    assert ids(store.jobs_page(queue="q0", name="n0")) == [made[6], made[0]]
    assert store.jobs_page(state="failed")[0].error == "boom"


def test_a_walk_through_pages_sees_every_job_once(store):
    made = store.enqueue([job() for _ in range(23)])
    seen, before = [], None
    while True:
        page = store.jobs_page(queue="default", before=before, limit=10)
        if not page:
            break
        seen += ids(page)
        before = page[-1].id
    assert seen == made[::-1]


def test_a_batchs_members_page(store):
    batch_id, members = store.create_batch(NewBatch("default", name="b"), [job() for _ in range(4)],
                                           10.0)
    store.enqueue([job()])
    assert ids(store.jobs_page(batch_id=batch_id)) == members[::-1]
    assert ids(store.jobs_page(batch_id=batch_id, before=members[2])) == members[1::-1]
    assert ids(store.jobs_page(batch_id=batch_id, state="running")) == []
    assert ids(store.jobs_page(batch_id=batch_id + 1)) == []


def test_batches_pages_newest_first(store):
    made = [store.create_batch(NewBatch("default", name=f"b{i}"), [job()], 10.0)[0]
            for i in range(5)]
    assert [b.id for b in store.batches_page()] == made[::-1]
    page = store.batches_page(before=made[3], limit=2)
    assert [b.id for b in page] == [made[2], made[1]]
    assert page[0].name == "b2" and page[0].total == 1 and page[0].pending == 1


def test_minute_rows_add_up_across_writes_and_bucket_by_queue_or_name(store):
    store.record_minutes([MinuteRow(60, "q", "a", 2, 1, 1, 3.0, 2.0, 2, 1.0, 0.75),
                          MinuteRow(120, "q", "b", 1, 1, 0, 0.5, 0.5, 1, 0.25, 0.25),
                          MinuteRow(120, "r", "a", 4, 4, 0, 4.0, 1.0, 0, 0.0, 0.0)])
    store.record_minutes([MinuteRow(60, "q", "a", 1, 1, 0, 1.0, 5.0, 1, 1.0, 0.5)])
    store.record_minutes([])
    by_queue = store.minute_series(0, 3600, "queue")
    assert [tuple(s) for s in by_queue] == [(0, "q", 4, 3, 1, 4.5, 5.0, 4, 2.25, 0.75),
                                            (0, "r", 4, 4, 0, 4.0, 1.0, 0, 0.0, 0.0)]
    by_name = store.minute_series(61, 60, "name")  # minute 60 starts before 61: left out
    assert [(s.at, s.key, s.runs) for s in by_name] == [(120, "a", 4), (120, "b", 1)]
    assert [(s.at, s.key, s.runs) for s in store.minute_series(60, 60, "name")] == [
        (60, "a", 3), (120, "a", 4), (120, "b", 1)]
    assert store.prune_minutes(120) == 1
    assert [s.at for s in store.minute_series(0, 60, "queue")] == [120, 120]


def test_whole_hours_come_from_the_hourly_rows_and_add_up_the_same(store):
    rows = [MinuteRow(m, "q", "a", 1, n % 2, 1 - n % 2, float(n % 7), float(n % 5), 1,
                      (n % 8) / 4, (n % 3) / 2)  # sums exact in binary: any order adds up alike
            for n, m in enumerate(range(0, 5 * 3600, 60 * 7))]
    store.record_minutes(rows[:20])
    store.record_minutes(rows[20:])
    # from a whole hour in whole hours: the hourly rows; from a minute: the minute rows
    assert store.minute_series(3600, 2 * 3600, "name") == bucket_rows(rows, 3600, 2 * 3600, "name")
    assert store.minute_series(3660, 3600, "name") == bucket_rows(rows, 3660, 3600, "name")
    store.prune_minutes(2 * 3600)
    assert [s.at for s in store.minute_series(0, 3600, "queue")] == [7200, 10800, 14400]
