"""counts() and the reads of `jobrt status` / `jobrt health`, kept in counter rows (migration 4).

SQLite and PostgreSQL keep jobs per queue and state in counter rows, and pending jobs
per slot of available_at (16 s, 4096 s and 1048576 s slots), changed in the same
transaction as every change of a job, so the reads never walk the jobs table. Here the
counts are held to a brute-force count over the jobs table itself: at every slot
boundary, after any change made through the verbs (on PostgreSQL by hand in SQL too),
after the migration from an older schema; and the reads are checked never to scan the
table.
"""

from __future__ import annotations


import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.storage import NewJob, Outcome, open_storage

BASE = 1048576.0 * 1700  # a boundary of every slot size
QUEUES = ["default", "emails"]
NAMES = ["a:x", "b:y"]
# Offsets from BASE where a slot of some level starts or ends, and just beside them.
EDGES = sorted({sign * (k * w + d) for w in (16.0, 4096.0, 1048576.0)
                for k in (0, 1, 255, 256) for d in (-0.25, 0.0, 0.25) for sign in (1, -1)})
# Times are normal floats (a subnormal one, below 1e-307 in size, can fall in the wrong
# slot: its division by a slot width rounds to zero); any real epoch time is.
offsets = st.sampled_from(EDGES) | st.floats(-3e6, 3e6, allow_nan=False, allow_infinity=False,
                                             allow_subnormal=False)

BRUTE = """SELECT queue, CASE WHEN state = 'pending' AND available_at > {now} THEN 'delayed'
                            ELSE state END, count(*)
           FROM {table} GROUP BY 1, 2"""


def brute_counts(store, now: float) -> dict:
    """counts() the slow way: every job row read and bucketed."""
    sql = store.__class__.__name__ == "SqliteStorage"
    query = BRUTE.format(now="?" if sql else "%s", table="jobs" if sql else "jobrt_jobs")
    out: dict[str, dict[str, int]] = {}
    for queue, bucket, n in store.conn.execute(query, (now,)).fetchall():
        out.setdefault(queue, dict.fromkeys(
            ("pending", "delayed", "running", "succeeded", "failed", "cancelled"), 0))[bucket] = n
    return out


def brute_pending(store) -> list:
    table = "jobs" if store.__class__.__name__ == "SqliteStorage" else "jobrt_jobs"
    return sorted(tuple(row) for row in store.conn.execute(
        f"SELECT queue, name, count(*) FROM {table} WHERE state = 'pending' GROUP BY 1, 2"))


def agree(store, probes) -> None:
    for now in probes:
        assert store.counts(now) == brute_counts(store, now), now
    assert store.pending_by_queue_and_name() == brute_pending(store)


def job(at: float, queue: str = "default", name: str = "a:x") -> NewJob:
    return NewJob(queue, name, orjson.dumps([[], {}]), at)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """A function that opens the backend's (one) database, emptied when asked."""
    if request.param == "sqlite":
        url, base_dir = "sqlite:///jobs.db", str(tmp_path)
    else:
        url, base_dir = request.getfixturevalue("pg_url"), None
    opened = []

    def open_(empty: bool = False):
        store = open_storage(url, role="supervisor", base_dir=base_dir)
        opened.append(store)
        if empty:
            if request.param == "sqlite":  # its counters are written by the backend alone
                store.conn.execute("DELETE FROM jobs")
                store.conn.execute("DELETE FROM job_counts")
            else:  # TRUNCATE, which its trigger answers by emptying the counts
                store.conn.execute("TRUNCATE jobrt_jobs, jobrt_job_tags")
        return store

    yield open_
    for store in opened:
        store.close()


# -- exact at every slot boundary, whatever the verbs did --------------------------------

def test_counts_equal_a_brute_force_count_at_every_slot_boundary(backend):
    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), ats=st.lists(offsets, min_size=1, max_size=12),
           probes=st.lists(offsets, min_size=1, max_size=6),
           base=st.sampled_from([BASE, 0.0]))  # 0: negative times too, where floor matters
    def check(data, ats, probes, base):
        store = backend(empty=True)
        try:
            ids = store.enqueue([job(base + at, QUEUES[i % 2], NAMES[i // 2 % 2])
                                 for i, at in enumerate(ats)])
            probes = [base + p for p in probes] + [base + at for at in ats]
            agree(store, probes)
            # Claim some of what is due at a time of hypothesis' choosing, then end them
            # every way a run ends, and move others by hand.
            now = base + data.draw(offsets)
            claimed = store.claim("s1", QUEUES, data.draw(st.integers(0, len(ids))), now + 30, now)
            outcomes = []
            for c in claimed:
                kind = data.draw(st.sampled_from(["succeeded", "failed", "pending", "running"]))
                if kind != "running":
                    outcomes.append(Outcome(c.id, c.attempt, kind, now, error="x",
                                            available_at=base + data.draw(offsets)))
            store.settle("s1", outcomes)
            agree(store, probes)
            for job_id in data.draw(st.lists(st.sampled_from(ids), max_size=3)):
                store.cancel(job_id, now)
            if data.draw(st.booleans()):
                store.rescue(now, owner="s1")
            store.retry_failed(None, base + data.draw(offsets))
            agree(store, probes)
            store.heartbeat("s1", "host", 1, now, {}, now, now + 30)  # tidies the counter rows
            agree(store, probes)
            store.prune(base + 1e9, 3)
            store.clear(data.draw(st.sampled_from(QUEUES)))
            store.flush_failed()
            agree(store, probes)
        finally:
            store.close()

    check()


def test_postgresql_counts_changes_made_by_hand_in_sql_too(pg_url):
    """PostgreSQL's counters are kept by triggers, so they follow any writer (the SQLite
    backend tallies its own writes instead: a third of its hot path went to triggers)."""
    store = open_storage(pg_url, role="supervisor")
    table, mark = "jobrt_jobs", "%s"
    ids = store.enqueue([job(BASE + 10), job(BASE - 10), job(BASE + 5000, "emails")])
    probes = [BASE, BASE + 20, BASE + 6000, BASE + 2e6]
    for statement, args in [
        (f"UPDATE {table} SET available_at = {mark} WHERE id = {mark}", (BASE + 3e6, ids[0])),
        (f"UPDATE {table} SET queue = 'other', name = 'c:z' WHERE id = {mark}", (ids[1],)),
        (f"UPDATE {table} SET state = 'succeeded', finished_at = 1 WHERE id = {mark}", (ids[2],)),
        (f"INSERT INTO {table} (queue, name, payload, state, available_at, created_at) "
         f"VALUES ('x', 'y', {mark}, 'failed', 0, 0)", (b"[]",)),
        (f"DELETE FROM {table} WHERE id = {mark}", (ids[0],)),
    ]:
        store.conn.execute(statement, args)
        agree(store, probes)
    store.close()


# -- migrating an older schema fills the counts from its rows ----------------------------

def mixed_rows(table: str, mark: str) -> tuple[str, list]:
    rows = []
    for i in range(40):
        state = ("pending", "running", "succeeded", "failed", "cancelled")[i % 5]
        rows.append((QUEUES[i % 2], NAMES[i % 3 % 2], b"[]", state,
                     BASE + EDGES[i * 7 % len(EDGES)], 0.0))
    return (f"INSERT INTO {table} (queue, name, payload, state, available_at, created_at) "
            f"VALUES ({', '.join([mark] * 6)})"), rows


def old_sqlite_database(path, version: int) -> None:
    """An SQLite file at schema `version` holding mixed_rows(), written as that version's
    jobrt left it."""
    from tests.contract.old_schema import sqlite_at_version

    conn = sqlite_at_version(path, version)
    conn.executemany(*mixed_rows("jobs", "?"))
    conn.close()


def test_a_version_3_sqlite_database_gets_its_counts_from_its_rows(tmp_path):
    from runtime.storage.sqlite import SqliteStorage
    from runtime.storage.sqlite_file import SCHEMA_VERSION

    path = tmp_path / "jobs.db"
    old_sqlite_database(path, 3)
    store = SqliteStorage(str(path))
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
        agree(store, [BASE + e for e in EDGES])
        assert sum(n for per_queue in store.counts(BASE).values() for n in per_queue.values()) == 40
    finally:
        store.close()


def test_a_version_4_sqlite_database_keeps_the_counts_its_triggers_made(tmp_path):
    """Migration 5 drops the counting triggers: what they counted stays, and from then on
    the backend counts its own writes."""
    from runtime.storage.sqlite import SqliteStorage
    from runtime.storage.sqlite_file import SCHEMA_VERSION

    path = tmp_path / "jobs.db"
    old_sqlite_database(path, 4)  # its rows counted by migration 4's triggers
    store = SqliteStorage(str(path), role="supervisor")
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 5
        assert not store.conn.execute(  # (migration 12's count a batch's members)
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'jobs_count%'"
        ).fetchall()
        agree(store, [BASE + e for e in EDGES])
        store.enqueue([job(BASE + 1.0), job(BASE + 5000.0, "emails")])
        store.settle("s1", [Outcome(c.id, c.attempt, "succeeded", BASE)
                            for c in store.claim("s1", QUEUES, 3, BASE + 30, BASE + 2e6)])
        store.flush_failed()
        agree(store, [BASE + e for e in EDGES])
    finally:
        store.close()


def test_a_version_3_postgresql_schema_gets_its_counts_from_its_rows(pg_url):
    import psycopg

    from runtime.storage.pgschema import SCHEMA_VERSION
    from tests.contract.old_schema import postgres_at_version

    with psycopg.connect(pg_url, autocommit=True) as conn:
        postgres_at_version(conn, 3)
        with conn.cursor() as cursor:
            cursor.executemany(*mixed_rows("jobrt_jobs", "%s"))
    store = open_storage(pg_url)
    try:
        assert store.conn.execute("SELECT max(version) FROM jobrt_migrations").fetchone()[0] \
            == SCHEMA_VERSION >= 4
        agree(store, [BASE + e for e in EDGES])
        assert sum(n for per_queue in store.counts(BASE).values() for n in per_queue.values()) == 40
    finally:
        store.close()


# -- the reads never walk the jobs table ----------------------------------------------------

def test_sqlite_reads_search_the_counts_and_the_due_index_only(tmp_path):
    from runtime.storage.sqlite_file import SQL

    store = open_storage("sqlite:///jobs.db", base_dir=str(tmp_path))
    try:
        for name, args in (("counts", (BASE,)), ("oldest_pending", (BASE,)),
                           ("pending_by_queue_and_name", ())):
            plan = [row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + SQL[name], args)]
            on_jobs = [step for step in plan if " jobs " in f" {step} "]
            assert all(step.startswith(("SEARCH jobs USING INDEX jobs_due (queue=?",
                                        "SEARCH jobs USING INDEX jobs_blocked (queue=?"))
                       for step in on_jobs), (name, plan)
            assert not any(step.startswith("SCAN") and "job_counts" in step for step in plan), plan
        plan = " | ".join(row[3] for row in store.conn.execute(
            "EXPLAIN QUERY PLAN " + SQL["counts"], (BASE,)))
        # Only the rest of now's 16 s slot is counted in the index, a range of it.
        assert "jobs_due (queue=? AND available_at>? AND available_at<?)" in plan, plan
    finally:
        store.close()


def test_postgresql_reads_never_scan_the_jobs_table(pg_url):
    from runtime.storage.postgres import SQL

    store = open_storage(pg_url)
    try:
        store.enqueue([job(BASE + e) for e in EDGES])
        store.conn.execute("ANALYZE jobrt_jobs")
        store.conn.execute("SET enable_seqscan = off")  # as if the table were big
        for name in ("counts", "oldest_pending", "pending_by_queue_and_name"):
            plan = " ".join(row[0] for row in store.conn.execute(
                "EXPLAIN " + SQL[name], {"now": BASE}))
            assert "Seq Scan on jobrt_jobs" not in plan, (name, plan)
    finally:
        store.close()


def test_sqlite_heartbeats_drop_the_counter_rows_that_fell_to_zero(tmp_path, monkeypatch):
    from runtime.storage import sqlite

    monkeypatch.setattr(sqlite, "TIDY_BATCH", 4)  # rows one heartbeat deletes at most
    store = open_storage("sqlite:///jobs.db", role="supervisor", base_dir=str(tmp_path))
    try:
        store.enqueue([job(BASE + 16 * i) for i in range(5)])
        claimed = store.claim("s1", ["default"], 5, BASE + 1e5, BASE + 1e5)
        store.settle("s1", [Outcome(c.id, c.attempt, "succeeded", BASE) for c in claimed])
        zero = "SELECT count(*) FROM job_counts WHERE n = 0"
        assert store.conn.execute(zero).fetchone()[0] == 5 + 1 + 1 + 1  # slots, running
        before = store.counts(BASE)
        store.heartbeat("s1", "host", 1, BASE, {}, BASE, BASE + 30)
        assert store.conn.execute(zero).fetchone()[0] == 4
        store.heartbeat("s1", "host", 1, BASE, {}, BASE, BASE + 30)
        assert store.conn.execute(zero).fetchone()[0] == 0
        assert store.counts(BASE) == before == brute_counts(store, BASE)
        assert store.conn.execute("SELECT count(*) FROM job_counts").fetchone()[0] == 1
    finally:
        store.close()


# -- PostgreSQL: writers never wait for a counter ---------------------------------------------

def test_postgresql_writers_never_wait_on_each_other_for_a_counter(pg_url):
    """The triggers only ever insert count changes: an enqueue still open in another
    transaction holds nothing a supervisor needs (whose lock_timeout is 200 ms), and a
    heartbeat skips the fold while another one folds, and folds at its next turn."""
    import psycopg

    from runtime.storage.postgres import FOLD_LOCK

    supervisor = open_storage(pg_url, role="supervisor")
    changes = "SELECT count(*) FROM jobrt_count_changes"
    try:
        supervisor.enqueue([job(BASE - 1), job(BASE + 5000, "emails")])
        supervisor.heartbeat("s1", "host", 1, BASE, {}, BASE, BASE + 30)  # folded
        assert supervisor.conn.execute(changes).fetchone()[0] == 0
        with psycopg.connect(pg_url) as other:  # one open transaction, never committed
            other.execute("SELECT pg_advisory_xact_lock(%s)", (FOLD_LOCK,))  # folding now
            other.execute("INSERT INTO jobrt_jobs (queue, name, payload, available_at, "
                          "created_at) VALUES ('default', 'a:x', '[]', %s, 0)", (BASE - 1,))
            supervisor.enqueue([job(BASE - 1)])
            claimed = supervisor.claim("s1", ["default"], 5, BASE + 30, BASE)
            assert len(claimed) == 2  # not the uncommitted one
            supervisor.settle("s1", [Outcome(c.id, c.attempt, "succeeded", BASE) for c in claimed])
            supervisor.heartbeat("s1", "host", 1, BASE, {}, BASE, BASE + 30)  # not its turn
            assert supervisor.conn.execute(changes).fetchone()[0] > 0
            assert supervisor.counts(BASE) == brute_counts(supervisor, BASE)
            other.rollback()
        supervisor.heartbeat("s1", "host", 1, BASE, {}, BASE, BASE + 30)
        assert supervisor.conn.execute(changes).fetchone()[0] == 0
        # Folded: one row per key, none zero.
        assert supervisor.conn.execute("SELECT count(*) FROM jobrt_counts WHERE n = 0"
                                       ).fetchone()[0] == 0
        assert supervisor.counts(BASE) == brute_counts(supervisor, BASE) == {
            "default": {"pending": 0, "delayed": 0, "running": 0, "succeeded": 2, "failed": 0,
                        "cancelled": 0},
            "emails": {"pending": 0, "delayed": 1, "running": 0, "succeeded": 0, "failed": 0,
                       "cancelled": 0}}
    finally:
        supervisor.close()


def test_postgresql_folds_a_backlog_of_changes_a_batch_at_a_time(pg_url, monkeypatch):
    from runtime.storage import postgres

    monkeypatch.setattr(postgres, "FOLD_BATCH", 4)
    monkeypatch.setattr(postgres, "FOLD_BUDGET", 0.0)  # one batch per heartbeat
    store = open_storage(pg_url, role="supervisor")
    changes = "SELECT count(*) FROM jobrt_count_changes"
    try:
        for i in range(5):  # no supervisor folds meanwhile: each enqueue adds its changes
            store.enqueue([job(BASE + 5000 * i, QUEUES[i % 2], NAMES[i // 2 % 2])])
        assert store.conn.execute(changes).fetchone()[0] == 5 * 3  # one per level
        for left in (11, 7, 3, 0):
            store.heartbeat("s1", "host", 1, BASE, {}, BASE, BASE + 30)
            assert store.conn.execute(changes).fetchone()[0] == left
            agree(store, [BASE + e for e in EDGES])
        # Levels 0 and 1: one key per job; level 2 (12 days, per name): jobs 0 and 4 share one.
        assert store.conn.execute("SELECT count(*) FROM jobrt_counts").fetchone()[0] == 5 + 5 + 4
        # With time to spare, a heartbeat folds batch after batch until none is whole.
        monkeypatch.setattr(postgres, "FOLD_BUDGET", 60.0)
        store.clear("default")
        store.clear("emails")
        assert store.conn.execute(changes).fetchone()[0] == 14  # a change per key, per clear
        store.heartbeat("s1", "host", 1, BASE, {}, BASE, BASE + 30)
        assert store.conn.execute(changes).fetchone()[0] == 0
        assert store.conn.execute("SELECT count(*) FROM jobrt_counts").fetchone()[0] == 0
        assert store.counts(BASE) == {}
    finally:
        store.close()


def test_postgresql_a_role_that_may_change_jobs_needs_no_rights_on_the_counts(pg_url):
    """The triggers run with their owner's rights: a client granted the jobs table (as
    before the counts existed) still enqueues, and its jobs are counted."""
    import uuid

    import psycopg

    open_storage(pg_url).close()  # the schema, made by its owner
    role = "client_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON jobrt_jobs, jobrt_migrations "
                     f"TO {role}")
        conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    client = open_storage(pg_url.replace("postgresql://postgres@", f"postgresql://{role}@"))
    try:
        [job_id] = client.enqueue([job(BASE)])
        assert client.cancel(job_id, BASE)
    finally:
        client.close()
    owner = open_storage(pg_url)
    try:
        assert owner.counts(BASE)["default"]["cancelled"] == 1
        agree(owner, [BASE])
    finally:
        owner.close()
