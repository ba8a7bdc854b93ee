"""What only the PostgreSQL backend promises: safe concurrent migrations, surviving
a lost connection or a server restart, LISTEN/NOTIFY wake-ups, SKIP LOCKED
claims, and error lines that name the database but never a password."""

from __future__ import annotations

import fcntl
import multiprocessing
import select
import sys
import termios
import threading
import time

import orjson
import psycopg
import pytest

from runtime.errors import StorageError
from runtime.storage import NewJob, Outcome, open_storage
from runtime.storage.pgschema import MIGRATION_LOCK, SCHEMA_VERSION
from tests.conftest import wait_for

SECRET = "s3cret"
SAFETY = 30  # seconds a wait for an event may take before the test fails instead of hanging


def job(n: int = 0, **extra) -> NewJob:
    return NewJob("default", "jobs.examples:add", orjson.dumps([[n], {}]), 0.0, **extra)


def admin(url: str, query: str, params=None) -> list:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def terminate(url: str, pid: int) -> None:
    """End one server process and wait until it is gone."""
    admin(url, "SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while admin(url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
        assert time.monotonic() < deadline, "the backend did not exit"
        time.sleep(0.01)


def at_most_one_failure(call, *args):
    """Call once more after a StorageError; the second call must work."""
    try:
        return call(*args)
    except StorageError as exc:
        assert "\n" not in str(exc)
        return call(*args)


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")


# -- opening and migrations -------------------------------------------------

def _open_and_enqueue(url, barrier, errors):
    try:
        barrier.wait(10)
        store = open_storage(url, role="supervisor")
        store.enqueue([job()])
        store.close()
    except BaseException as exc:  # reported to the test, which fails with it
        errors.put(repr(exc))


def test_supervisors_starting_together_migrate_once(pg_url):
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_open_and_enqueue, args=(pg_url, barrier, errors))
             for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert errors.empty(), errors.get()
    assert admin(pg_url, "SELECT version FROM jobrt_migrations ORDER BY version") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)]
    assert admin(pg_url, "SELECT count(*) FROM jobrt_jobs") == [(3,)]


def test_migration_waits_for_the_advisory_lock(pg_url):
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(1), ctx.Queue()
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        proc = ctx.Process(target=_open_and_enqueue, args=(pg_url, barrier, errors))
        proc.start()
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND wait_event_type = 'Lock' AND wait_event = 'advisory'")
        wait_for(lambda: proc.exitcode is not None or admin(pg_url, waiting) == [(1,)], SAFETY,
                 "the migration to wait for the advisory lock (or to end without it)")
        assert proc.exitcode is None, "migrated without taking the lock"
        assert admin(pg_url, "SELECT to_regclass('jobrt_jobs') IS NULL") == [(True,)]
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        proc.join(30)
    assert proc.exitcode == 0 and errors.empty()
    assert admin(pg_url, "SELECT count(*) FROM jobrt_jobs") == [(1,)]


def test_a_newer_schema_is_refused(pg_url):
    open_storage(pg_url).close()
    admin(pg_url, "INSERT INTO jobrt_migrations VALUES (99, 0)")
    with pytest.raises(StorageError, match="schema version 99.*upgrade jobrt"):
        open_storage(pg_url)


def test_a_version_1_schema_is_migrated_in_place(pg_url):
    """Migration 2 adds the index of ended jobs to a database written before it existed."""
    from runtime.storage.pgschema import MIGRATIONS, SQL

    admin(pg_url, SQL["migrations_table"])
    admin(pg_url, MIGRATIONS[0][1])
    admin(pg_url, "INSERT INTO jobrt_migrations VALUES (1, 0)")
    admin(pg_url, "INSERT INTO jobrt_jobs (queue, name, payload, state, available_at, created_at, "
                  "finished_at) VALUES ('default', 'jobs.examples:add', '[]', 'succeeded', 0, 0, 5)")
    store = open_storage(pg_url)
    try:
        assert admin(pg_url, "SELECT max(version) FROM jobrt_migrations") == [(SCHEMA_VERSION,)]
        assert admin(pg_url, "SELECT indexname FROM pg_indexes WHERE indexname = %s",
                     ("jobrt_jobs_ended",)) == [("jobrt_jobs_ended",)]
        assert store.prune(10.0, 10) == 1
    finally:
        store.close()


def test_roles_set_commit_durability_and_time_limits(pg_url):
    supervisor, client = open_storage(pg_url, role="supervisor"), open_storage(pg_url)
    query = "SELECT name, setting, source FROM pg_settings WHERE source = 'session'"
    assert sorted(supervisor.conn.execute(query).fetchall()) == [
        ("lock_timeout", "200", "session"), ("statement_timeout", "10000", "session"),
        ("synchronous_commit", "off", "session")]
    assert client.conn.execute(query).fetchall() == []  # the server's defaults: durable
    supervisor.close()
    client.close()


def test_a_supervisor_gives_up_on_a_held_lock(pg_url):
    store = open_storage(pg_url, role="supervisor")
    store.enqueue([job()])
    [claimed] = store.claim("s1", ["default"], 1, 200.0, 100.0)
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT 1 FROM jobrt_jobs FOR UPDATE")  # held until this block ends
        # It gives up by its own lock_timeout, not by the 10 s statement_timeout or never.
        with pytest.raises(StorageError, match="lock_timeout.*nothing was written") as info:
            store.settle("s1", [Outcome(claimed.id, 1, "succeeded", 101.0)])
        assert info.value.contended
    store.settle("s1", [Outcome(claimed.id, 1, "succeeded", 101.0)])
    assert store.get(claimed.id).state == "succeeded"
    store.close()


def test_the_environment_fills_in_the_url(pg_url, pg_cluster, monkeypatch):
    dbname = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
    monkeypatch.setenv("PGHOST", pg_cluster.socket_dir)
    monkeypatch.setenv("PGUSER", "postgres")
    monkeypatch.setenv("PGDATABASE", dbname)
    for url in ("postgresql://", f"postgres:///{dbname}"):
        store = open_storage(url)
        assert store.enqueue([job()])
        assert store.url_for_humans == (f"postgresql:///{dbname}?host={pg_cluster.socket_dir}"
                                        f"&port=5432")
        store.close()


# -- data ----------------------------------------------------------------------

def test_payloads_options_and_results_are_kept_byte_for_byte(pg_url):
    store = open_storage(pg_url, role="supervisor")
    payload, options, result = b'[[1.50, "\\u00e9"],  {}]', b'{ "tries" :2}', b'{"b": 1,"a":[ ]}'
    [job_id] = store.enqueue([NewJob("default", "n", payload, 0.0, options=options)])
    [claimed] = store.claim("s1", ["default"], 1, 200.0, 100.0)
    assert (claimed.payload, claimed.options) == (payload, options)
    store.settle("s1", [Outcome(job_id, 1, "succeeded", 101.0, result=result)])
    assert admin(pg_url, "SELECT payload, options, result FROM jobrt_jobs") == [
        (payload, options, result)]
    assert store.get(job_id).result == {"b": 1, "a": []}
    store.close()


def test_batches_larger_than_the_socket_buffers(pg_url):
    """A pipeline of several megabytes is sent whole (psycopg's Pipeline.sync() can
    stall half-way on one; storage never calls it)."""
    store = open_storage(pg_url, role="supervisor")
    ids = store.enqueue([job(n) for n in range(20_000)])
    assert ids == list(range(1, 20_001))
    claimed = store.claim("s1", ["default"], 20_000, 200.0, 100.0)
    store.settle("s1", [Outcome(j.id, 1, "succeeded", 101.0, result=b'"%s"' % (b"x" * 200))
                        for j in claimed])
    assert store.counts(0.0)["default"]["succeeded"] == 20_000
    store.close()


# -- transactions and lost connections ---------------------------------------

def test_a_failed_enqueue_writes_nothing_and_wakes_nobody(pg_url):
    store = open_storage(pg_url, role="supervisor")
    listener = store.listener()
    store.channel = "x" * 100  # pg_notify fails after the insert: too long a channel name
    with pytest.raises(StorageError, match="nothing was written"):
        store.enqueue([job(1), job(2)])
    assert store.counts(0.0) == {}
    assert select.select([listener], [], [], 0.3)[0] == []
    listener.close()
    store.close()


def test_a_terminated_connection_reconnects_without_losing_data(pg_url):
    store = open_storage(pg_url, role="supervisor")
    ids = store.enqueue([job(1), job(2)])
    terminate(pg_url, store.conn.info.backend_pid)
    [first] = at_most_one_failure(store.claim, "s1", ["default"], 1, 200.0, 100.0)
    terminate(pg_url, store.conn.info.backend_pid)
    at_most_one_failure(store.settle, "s1", [Outcome(first.id, 1, "succeeded", 101.0)])
    # Terminated in the middle of a call: that call fails, the next one reconnects.
    old = store.conn
    admin(pg_url, "SELECT pg_terminate_backend(%s)", (old.info.backend_pid,))
    at_most_one_failure(store.enqueue, [job(3)])
    assert [store.get(i).state for i in ids] == ["succeeded", "pending"]
    assert sum(store.counts(0.0)["default"].values()) == 3
    store.close()


def test_a_server_restart_is_survived(pg_url, pg_cluster):
    client = open_storage(pg_url)
    supervisor = open_storage(pg_url, role="supervisor")
    listener = supervisor.listener()
    [job_id] = client.enqueue([job()])
    pg_cluster.restart()
    assert at_most_one_failure(client.get, job_id).state == "pending"
    assert [j.id for j in at_most_one_failure(supervisor.claim, "s1", ["default"], 5, 200.0,
                                              100.0)] == [job_id]
    with pytest.raises(StorageError, match="wake-up connection"):
        deadline = time.monotonic() + SAFETY  # a hang guard: the lost connection reads EOF at once
        while time.monotonic() < deadline:
            select.select([listener], [], [], 0.1)
            listener.drain()
    listener.close()
    listener = supervisor.listener()  # a new one works again
    client.enqueue([job()])
    assert select.select([listener], [], [], SAFETY)[0]
    for store in (listener, client, supervisor):
        store.close()


def _slow_insert_trigger(url: str, deferred: bool) -> None:
    """Make every insert into jobrt_jobs sleep, at COMMIT or at once."""
    admin(url, "CREATE FUNCTION nap() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$")
    admin(url, "CREATE CONSTRAINT TRIGGER nap AFTER INSERT ON jobrt_jobs "
               + ("DEFERRABLE INITIALLY DEFERRED " if deferred else "")
               + "FOR EACH ROW EXECUTE FUNCTION nap()")


def terminate_when_busy(url: str, query_like: str, spare: int = 0) -> int:
    """Terminate the server process running `query_like` (not `spare`); its pid."""
    deadline = time.monotonic() + 10
    query = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
             "AND state = 'active' AND query LIKE %s AND pid <> %s")
    while not (busy := admin(url, query, (query_like, spare))):
        assert time.monotonic() < deadline, f"no backend ran {query_like}"
        time.sleep(0.01)
    admin(url, "SELECT pg_terminate_backend(%s)", busy[0])
    return busy[0][0]


@pytest.mark.parametrize("at_commit", [True, False])
def test_a_connection_lost_while_writing_says_what_is_known(pg_url, at_commit):
    store = open_storage(with_password(pg_url))
    _slow_insert_trigger(pg_url, deferred=at_commit)
    errors = []
    thread = threading.Thread(target=lambda: errors.append(_enqueue_error(store)))
    thread.start()
    if at_commit:
        terminate_when_busy(pg_url, "COMMIT")
    else:
        # Lost before COMMIT: nothing was written, so enqueue tries once more at once.
        first = terminate_when_busy(pg_url, "%INSERT INTO jobrt_jobs%")
        terminate_when_busy(pg_url, "%INSERT INTO jobrt_jobs%", spare=first)
    thread.join(10)
    [(message, unknown)] = errors
    assert unknown is at_commit
    assert "lost the connection to PostgreSQL database" in message and SECRET not in message
    if at_commit:
        assert "while committing (enqueueing)" in message and "outcome is unknown" in message
    else:
        assert "while enqueueing" in message and "nothing was written" in message
    admin(pg_url, "DROP TRIGGER nap ON jobrt_jobs")
    assert store.counts(0.0) == {}  # the next call reconnects
    store.close()


def test_an_enqueue_lost_before_commit_is_retried_once(pg_url):
    store = open_storage(pg_url)
    _slow_insert_trigger(pg_url, deferred=False)
    errors = []
    thread = threading.Thread(target=lambda: errors.append(_enqueue_error(store)))
    thread.start()
    terminate_when_busy(pg_url, "%INSERT INTO jobrt_jobs%")
    thread.join(10)
    assert errors == ["no error"]
    assert store.counts(0.0)["default"]["pending"] == 1
    store.close()


def _enqueue_error(store) -> tuple[str, bool] | str:
    try:
        store.enqueue([job()])
    except StorageError as exc:
        return str(exc), exc.outcome_unknown
    return "no error"


def test_error_lines_and_repr_never_show_a_password(pg_url, pg_cluster, monkeypatch):
    url = with_password(pg_url)
    store = open_storage(url)
    shown = [repr(store), str(store.url_for_humans)]
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    for bad in (url.replace("/t_", "/missing_"),
                f"postgresql://postgres:{SECRET}@/db?host=/nonexistent-dir",
                f"postgresql://postgres:s3%cret@/db?host={pg_cluster.socket_dir}",
                f"postgresql:///db?password={SECRET}&host=/nonexistent-dir&bogus=1"):
        with pytest.raises(StorageError) as info:
            open_storage(bad)
        shown.append(str(info.value))
    assert "does not exist" in shown[2] and "cannot connect" in shown[3]
    terminate(pg_url, store.conn.info.backend_pid)
    store.target.url = url.replace("/t_", "/missing_")  # the reconnect fails now
    with pytest.raises(StorageError) as info:
        store.get(1)
    shown.append(str(info.value))
    for text in shown:
        assert SECRET not in text and "s3%cret" not in text and "hunter2" not in text, text
        assert "\n" not in text and "postgres@" not in text, text
    store.close()


# -- wake-ups ------------------------------------------------------------------

def test_an_enqueue_wakes_the_listener_of_its_database_only(pg_url, pg_cluster):
    supervisor = open_storage(pg_url, role="supervisor")
    listener = supervisor.listener()
    other = open_storage(pg_cluster.create_database())
    other.enqueue([job()])
    assert select.select([listener], [], [], 0.3)[0] == []
    client = open_storage(pg_url)
    client.enqueue([job(1)])
    client.notify()  # free right after an enqueue: its wake-up already went out
    assert select.select([listener], [], [], SAFETY)[0]
    listener.drain()
    assert select.select([listener], [], [], 0.2)[0] == []
    client.enqueue([job(2)])
    assert select.select([listener], [], [], SAFETY)[0]
    one = pending_bytes(listener)
    client.enqueue([job(3)])
    wait_for(lambda: pending_bytes(listener) >= 2 * one, what="the second wake-up to arrive")
    listener.drain()  # takes both
    assert select.select([listener], [], [], 0)[0] == []
    for store in (listener, client, other, supervisor):
        store.close()


def pending_bytes(listener) -> int:
    """Bytes the server has sent the listener that it has not read yet."""
    count = bytearray(4)
    fcntl.ioctl(listener.fileno(), termios.FIONREAD, count)
    return int.from_bytes(count, sys.byteorder)


def test_drain_on_a_terminated_listener_raises(pg_url):
    supervisor = open_storage(pg_url, role="supervisor")
    listener = supervisor.listener()
    terminate(pg_url, listener.conn.info.backend_pid)
    with pytest.raises(StorageError, match="lost the wake-up connection") as info:
        deadline = time.monotonic() + SAFETY
        while time.monotonic() < deadline:
            select.select([listener], [], [], 0.1)
            listener.drain()
    assert "\n" not in str(info.value)
    listener.close()
    listener.close()
    assert listener.fileno() == -1
    supervisor.close()


# -- several claimers ------------------------------------------------------------

def test_concurrent_claimers_never_take_the_same_job(pg_url):
    ids = set(open_storage(pg_url).enqueue([job(n) for n in range(400)]))
    stores = [open_storage(pg_url, role="supervisor") for _ in range(3)]
    claimed: list[list[int]] = [[] for _ in stores]
    barrier = threading.Barrier(len(stores))

    def work(n):
        store, owner, outcomes = stores[n], f"s{n}", []
        barrier.wait()
        while True:
            got = store.exchange(owner, outcomes, ["default"], 7, 200.0, 100.0)
            if not got:
                return
            claimed[n].extend(j.id for j in got)
            outcomes = [Outcome(j.id, j.attempt, "succeeded", 101.0) for j in got]
            if n == 0:  # one claimer settles apart; its exchange repeats them, fenced
                store.settle(owner, outcomes)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [i for mine in claimed for i in mine]
    assert len(every) == len(set(every)) == len(ids) and set(every) == ids
    assert all(mine for mine in claimed), "one claimer took everything"
    counts = stores[0].counts(100.0)["default"]
    assert counts["running"] + counts["succeeded"] == 400 and counts["pending"] == 0
    for store in stores:
        store.close()


def test_text_postgresql_cannot_store_is_refused_or_escaped(pg_url):
    store = open_storage(pg_url, role="supervisor")
    for bad in (job()._replace(queue="a\0b"), job()._replace(name="\ud800"),
                job(unique_key="k\0")):
        with pytest.raises(StorageError, match="invalid (queue|name|unique_key).*nothing"):
            store.enqueue([job(), bad])
    assert store.enqueue([job()]) == [1]  # the refused batches used no ids
    [claimed] = store.claim("s1", ["default"], 1, 200.0, 100.0)
    # A job's error with a NUL or a lone surrogate must not wedge its whole batch.
    store.settle("s1", [Outcome(claimed.id, 1, "failed", 101.0, error="bad\0byte \ud800",
                                traceback="tb\0")])
    record = store.get(claimed.id)
    assert (record.state, record.error, record.traceback) == (
        "failed", "bad\\x00byte \\ud800", "tb\\x00")
    with pytest.raises(StorageError, match="not valid UTF-8"):
        store.claim("s1", ["\ud800"], 1, 200.0, 100.0)
    assert store.counts(0.0)["default"]["failed"] == 1
    store.close()


def test_the_claim_walks_its_index_before_any_analyze(pg_url):
    """A fresh backlog of 50k has no statistics yet: every index looks one row long. The claim
    must still walk jobrt_jobs_claim in claim order, not take jobrt_jobs_due and sort every
    due job of the queue (which made a supervisor drain 70 jobs/s at 50k pending)."""
    from runtime.storage.pgschema import SQL

    store = open_storage(pg_url, role="supervisor")
    try:
        store.enqueue([NewJob("default", "jobs.examples:noop", b"[[],{}]", 10.0)] * 50_000)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert conn.execute("SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables "
                                "WHERE relname = 'jobrt_jobs'").fetchone() == (None, None)
            conn.execute("BEGIN")
            plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + SQL["claim"], {
                "owner": "s1", "queues": ["default"], "limit": 50, "lease_expires": 200.0,
                "now": 100.0}))
            conn.execute("ROLLBACK")
        assert "jobrt_jobs_claim" in plan and "Sort" not in plan, plan
    finally:
        store.close()


def test_the_jobs_table_is_vacuumed_after_a_fixed_number_of_dead_rows(pg_url):
    """Not after a fifth of the table (PostgreSQL's default): with a million ended jobs kept,
    the claim would walk 200k dead entries of jobrt_jobs_claim before autovacuum came."""
    open_storage(pg_url, role="supervisor").close()
    with psycopg.connect(pg_url) as conn:
        options = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'jobrt_jobs'").fetchone()[0]
    assert {"autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=20000"} <= set(options)
