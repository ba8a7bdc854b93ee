"""pending_by_queue_and_name(), the read `jobrt health` and `jobrt status` use to find
pending jobs no live supervisor would run: the same answer from every backend, read
from the job counts the triggers of migration 4 keep (level 2: pending jobs per queue,
name and 12-day slot), never from the jobs table."""

from __future__ import annotations


import orjson

from runtime.storage import NewJob, Outcome, open_storage


def new(queue="default", name="jobs.examples:add", at=0.0) -> NewJob:
    return NewJob(queue, name, orjson.dumps([[], {}]), at)


def test_nothing_pending_is_an_empty_list(store):
    assert store.pending_by_queue_and_name() == []


def test_pending_jobs_due_and_delayed_are_counted_per_queue_and_name_in_order(store):
    store.enqueue([new("emails", "__main__:send_email")] * 3 + [new("default", "b:x")] * 2
                  + [new("default", "a:x", at=1e12)]  # delayed: pending all the same
                  + [new("default", "B:x"), new("émails", "a:x"), new("Z", "a:x")])
    # Code point order, whatever the database's collation.
    assert store.pending_by_queue_and_name() == [
        ("Z", "a:x", 1), ("default", "B:x", 1), ("default", "a:x", 1), ("default", "b:x", 2),
        ("emails", "__main__:send_email", 3), ("émails", "a:x", 1)]


def test_only_pending_jobs_count_and_a_job_counts_again_once_back_in_its_queue(store):
    ids = store.enqueue([new(name="a:x")] * 6)
    store.cancel(ids[0], 50.0)
    claimed = store.claim("s1", ["default"], 4, 130.0, 100.0)
    assert len(claimed) == 4
    store.settle("s1", [Outcome(claimed[0].id, claimed[0].attempt, "succeeded", 101.0, result=b"1"),
                        Outcome(claimed[1].id, claimed[1].attempt, "failed", 101.0, error="x"),
                        Outcome(claimed[2].id, claimed[2].attempt, "pending", 101.0, error="retry",
                                available_at=200.0)])
    # pending: the one never claimed and the retried one; running, ended and cancelled: not
    assert store.pending_by_queue_and_name() == [("default", "a:x", 2)]
    assert store.retry_failed(None, 102.0) == 1
    assert store.rescue(0.0, owner="s1") == 1
    assert store.pending_by_queue_and_name() == [("default", "a:x", 4)]
    assert store.clear("default") == 4
    assert store.pending_by_queue_and_name() == []


# -- SQLite: the counts, the migrations, the plan ------------------------------------------

def test_sqlite_reads_the_counts_alone(tmp_path):
    from runtime.storage.sqlite_file import SQL

    store = open_storage("sqlite:///jobs.db", base_dir=str(tmp_path))
    try:
        plan = " | ".join(row[3] for row in store.conn.execute(
            "EXPLAIN QUERY PLAN " + SQL["pending_by_queue_and_name"]))
        assert "SEARCH job_counts USING PRIMARY KEY (level=?)" in plan, plan
        assert " jobs " not in f" {plan} ", plan
        # Migration 4 dropped the index of migration 3: the counts answer instead.
        assert store.conn.execute("SELECT count(*) FROM sqlite_master "
                                  "WHERE name = 'jobs_pending_name'").fetchone()[0] == 0
    finally:
        store.close()


def test_a_version_2_sqlite_database_is_migrated_in_place(tmp_path):
    from runtime.storage.sqlite import SqliteStorage
    from runtime.storage.sqlite_file import SCHEMA_VERSION
    from tests.contract.old_schema import sqlite_at_version

    path = tmp_path / "jobs.db"
    conn = sqlite_at_version(path, 2)
    conn.execute("INSERT INTO jobs (queue, name, payload, available_at, created_at) "
                 "VALUES ('emails', 'a:x', X'5B5D', 0, 0)")
    conn.close()
    store = SqliteStorage(str(path))
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
        assert store.pending_by_queue_and_name() == [("emails", "a:x", 1)]
    finally:
        store.close()


# -- PostgreSQL: the counts and the migrations -----------------------------------------------

def test_a_version_2_postgresql_schema_is_migrated_in_place(pg_url):
    import psycopg

    from runtime.storage.pgschema import SCHEMA_VERSION, SQL
    from tests.contract.old_schema import postgres_at_version

    with psycopg.connect(pg_url, autocommit=True) as conn:
        postgres_at_version(conn, 2)
        conn.execute("INSERT INTO jobrt_jobs (queue, name, payload, available_at, created_at) "
                     "VALUES ('emails', 'a:x', '[]', 0, 0)")
    store = open_storage(pg_url)
    try:
        assert store.pending_by_queue_and_name() == [("emails", "a:x", 1)]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert conn.execute("SELECT max(version) FROM jobrt_migrations").fetchone()[0] \
                == SCHEMA_VERSION >= 4
            # Migration 3's index is gone again (migration 4): the counts answer instead.
            assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = "
                                "'jobrt_jobs_pending_name'").fetchone()[0] == 0
            plan = " ".join(row[0] for row in conn.execute(
                "EXPLAIN " + SQL["pending_by_queue_and_name"]))
            assert "jobrt_counts" in plan and "jobrt_jobs" not in plan, plan
    finally:
        store.close()
