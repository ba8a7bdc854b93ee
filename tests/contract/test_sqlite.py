"""What only the SQLite backend promises: the file, its mode, its schema, and
one clear StorageError for every file it cannot or must not use."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat

import orjson
import pytest

from runtime.errors import StorageError
from runtime.storage import NewJob, open_storage, sqlite_path
from runtime.storage.sqlite import SqliteStorage
from runtime.storage.sqlite_file import APPLICATION_ID, SCHEMA_VERSION


def job(n: int = 0) -> NewJob:
    return NewJob("default", "jobs.examples:add", orjson.dumps([[n], {}]), 0.0)


def test_url_forms(tmp_path):
    assert sqlite_path("sqlite:///var/j.db", str(tmp_path)) == str(tmp_path / "var" / "j.db")
    assert sqlite_path("sqlite:////abs/j.db", str(tmp_path)) == "/abs/j.db"
    assert sqlite_path("sqlite:///my%20jobs.db", "/base") == "/base/my jobs.db"
    assert sqlite_path("sqlite:///j.db") == os.path.join(os.getcwd(), "j.db")
    for bad in ("sqlite://host/j.db", "sqlite:///", "sqlite:///j.db?mode=ro", "sqlite:///:memory:"):
        with pytest.raises(StorageError):
            sqlite_path(bad, "/base")


def test_unknown_and_unreachable_urls_are_refused_in_one_line():
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL database jobs") as info:
        open_storage("postgresql://user:secret@/jobs?host=/nonexistent-jobrt-dir")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(StorageError, match="'redis'.*sqlite:///"):
        open_storage("redis://localhost/0")
    with pytest.raises(StorageError):
        open_storage("jobs.db")
    with pytest.raises(ValueError):
        open_storage("memory://", role="worker")


def test_bulk_ids_follow_the_largest_id_ever_given_and_name_their_own_jobs(tmp_path):
    """The bulk insert works its ids out from AUTOINCREMENT's counter: after the newest jobs
    were deleted, the new ones still get ids never given before, each the id of its own job,
    across several of its statements."""
    store = open_storage("sqlite:///jobs.db", base_dir=str(tmp_path))
    try:
        old = store.enqueue([job(n) for n in range(5)])
        store.conn.execute("DELETE FROM jobs WHERE id >= ?", (old[2],))  # the newest three go
        ids = store.enqueue([job(n) for n in range(1000)])
        assert ids == list(range(old[-1] + 1, old[-1] + 1001))
        for n in (0, 249, 250, 999):
            assert store.get(ids[n]).args == [n]
    finally:
        store.close()


def test_file_is_created_0600_in_wal_mode_with_the_schema(tmp_path):
    store = open_storage("sqlite:///deep/dir/jobs.db", base_dir=str(tmp_path))
    try:
        store.enqueue([job()])
        path = tmp_path / "deep" / "dir" / "jobs.db"
        for name in (path, path.with_name("jobs.db-wal"), path.with_name("jobs.db-shm")):
            assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
        conn = store.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL for clients
    finally:
        store.close()
    supervisor = open_storage(f"sqlite:///{path}", role="supervisor")
    try:
        assert supervisor.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert supervisor.get(1).args == [0]  # reopening keeps the data
    finally:
        supervisor.close()


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(StorageError, match="is a directory"):
        SqliteStorage(str(tmp_path))


def test_an_unwritable_path_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create the directory") as info:
        open_storage("sqlite:///a-file/sub/jobs.db", base_dir=str(tmp_path))
    assert str(tmp_path / "a-file" / "sub" / "jobs.db") in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_read_only_file_is_refused(tmp_path):
    path = tmp_path / "jobs.db"
    SqliteStorage(str(path)).close()
    path.chmod(0o400)
    with pytest.raises(StorageError):
        SqliteStorage(str(path)).enqueue([job()])


@pytest.mark.parametrize("content", [
    b"this is not a database, it is somebody's notes\n" * 200,
    bytes(range(256)) * 64,
])
def test_a_non_database_file_is_left_byte_for_byte(tmp_path, content):
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(StorageError, match="not a jobrt database") as info:
        SqliteStorage(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["notes.db"]


def test_a_foreign_sqlite_database_is_left_untouched(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="not a jobrt one"):
        SqliteStorage(str(path))
    assert path.read_bytes() == before


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "jobs.db"
    SqliteStorage(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="upgrade jobrt"):
        SqliteStorage(str(path))


def test_a_locked_database_gives_a_storage_error_naming_the_file(tmp_path):
    path = tmp_path / "jobs.db"
    store = SqliteStorage(str(path), role="supervisor")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        store.conn.execute("PRAGMA busy_timeout = 0")  # fail at once instead of after 10 s
        with pytest.raises(StorageError, match="database is locked") as info:
            store.enqueue([job()])
        assert str(path) in str(info.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.enqueue([job()]) == [1]  # the connection is usable again
    store.close()


def _open_and_enqueue(path: str, barrier, n: int) -> None:
    barrier.wait()
    store = SqliteStorage(path)
    try:
        store.enqueue([job(n)])
    finally:
        store.close()


def test_processes_migrating_at_once_agree(tmp_path):
    path = str(tmp_path / "fresh.db")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    procs = [context.Process(target=_open_and_enqueue, args=(path, barrier, n)) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    store = SqliteStorage(path)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert sorted(store.get(i).args[0] for i in (1, 2, 3, 4)) == [0, 1, 2, 3]
    finally:
        store.close()


def test_claim_uses_the_partial_index(tmp_path):
    """A huge backlog must not be sorted on every claim."""
    from runtime.storage.sqlite_file import SQL

    store = SqliteStorage(str(tmp_path / "jobs.db"))
    try:
        plan = " | ".join(row[3] for row in store.conn.execute(
            "EXPLAIN QUERY PLAN " + SQL["claim"], ("o", 1.0, 1.0, "q", 1.0, 5)))
        assert "jobs_claim" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        store.close()


def test_a_version_1_database_is_migrated_in_place(tmp_path):
    """Migration 2 adds the index of ended jobs to a file written before it existed."""
    from runtime.storage import sqlfile
    from runtime.storage.sqlite_file import MIGRATIONS

    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in sqlfile.statements(MIGRATIONS[0][1]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO jobs (queue, name, payload, state, available_at, created_at, "
                 "finished_at) VALUES ('default', 'jobs.examples:add', X'5B5D', 'succeeded', "
                 "0, 0, 5)")
    conn.close()
    store = SqliteStorage(str(path))
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
        indexes = {row[0] for row in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "jobs_ended" in indexes
        assert store.prune(10.0, 10) == 1
    finally:
        store.close()


def test_prune_uses_the_index_of_ended_jobs(tmp_path):
    """Pruning a big table walks ended jobs only, in order, and sorts nothing."""
    from runtime.storage.sqlite_file import SQL

    store = SqliteStorage(str(tmp_path / "jobs.db"))
    try:
        plan = " | ".join(row[3] for row in store.conn.execute(
            "EXPLAIN QUERY PLAN " + SQL["prune"], (1.0, 5)))
        assert "jobs_ended" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        store.close()


def test_a_version_8_database_keeps_its_live_unique_keys(tmp_path):
    """Migration 9 moves the held keys to unique_held: a key held before is held after."""
    from runtime.storage import NewJob
    from tests.contract.old_schema import sqlite_at_version

    path = tmp_path / "jobs.db"
    conn = sqlite_at_version(path, 8)
    for state in ("pending", "succeeded"):
        conn.execute("INSERT INTO jobs (queue, name, payload, state, available_at, created_at, "
                     "unique_key) VALUES ('default', 'a:x', X'5B5B5D2C7B7D5D', ?, 0, 0, ?)",
                     (state, f"key-{state}"))
    conn.close()
    store = SqliteStorage(str(path))
    try:
        def again(key):
            return store.enqueue([NewJob("default", "a:x", b"[[],{}]", 0.0, unique_key=key)])[0]
        assert again("key-pending") == 1  # still held by its live job
        assert again("key-succeeded") == 3  # its job ended: free
    finally:
        store.close()


def test_results_are_settled_in_one_statement_as_the_bytes_they_came_as(tmp_path):
    # The batch of succeeded results goes in as one JSON document (settle_succeeded_many);
    # a result that is not UTF-8 (a job's forged frame) cannot, and is stored as it came.
    from runtime.storage import Outcome

    store = open_storage(f"sqlite:///{tmp_path}/q.db", role="supervisor")
    store.enqueue([job(n) for n in range(3)])
    claimed = store.exchange("s1", [], ["default"], 3, 1e12, 1e9)
    results = [b'{"a":"\\u00e9\\""}', None, b"\xff\xfe"]
    outcomes = [Outcome(j.id, j.attempt, "succeeded", 1e9 + 1, result=r, queue=j.queue, name=j.name)
                for j, r in zip(claimed, results)]
    store.exchange("s1", outcomes[:2], ["default"], 0, 1e12, 1e9)
    store.exchange("s1", outcomes[2:], ["default"], 0, 1e12, 1e9)
    stored = dict(store.conn.execute("SELECT id, result FROM jobs"))
    assert [stored[j.id] for j in claimed] == results
    states = dict(store.conn.execute("SELECT id, state FROM jobs"))
    assert {states[j.id] for j in claimed} == {"succeeded"}
    store.close()
