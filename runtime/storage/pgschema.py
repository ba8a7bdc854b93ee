"""The PostgreSQL backend's SQL (postgres.sql) and its schema: versioned migrations applied
under an advisory lock, so supervisors starting together are safe."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from psycopg import pq

from runtime.errors import StorageError
from runtime.storage import sqlfile
from runtime.storage.pgconn import is_broken

SQL = sqlfile.load(Path(__file__).with_name("postgres.sql"))
MIGRATIONS = sqlfile.migrations(SQL)
SCHEMA_VERSION = MIGRATIONS[-1][0]
MIGRATION_LOCK = 0x6A6F627274  # 'jobrt': the advisory lock key migrations take
IDLE = pq.TransactionStatus.IDLE


def migrate(conn: psycopg.Connection, where: str) -> None:
    """Apply missing migrations in one transaction under an advisory lock. Of two
    processes starting at once, the second waits for the lock, then finds the schema
    current. A current schema needs no lock (nor rights)."""
    if conn.execute(SQL["schema_exists"]).fetchone()[0]:
        if check_version(conn, where) == SCHEMA_VERSION:
            return
    conn.execute("BEGIN")
    try:
        # A long migration by another process is worth waiting for.
        conn.execute("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")
        conn.execute(SQL["migration_lock"], {"key": MIGRATION_LOCK})
        conn.execute(SQL["migrations_table"])
        version = check_version(conn, where)
        for number, script in MIGRATIONS:
            if number > version:
                conn.execute(script)
                conn.execute(SQL["record_migration"], {"version": number, "at": time.time()})
        conn.execute("COMMIT")
    except BaseException:
        if not is_broken(conn) and conn.pgconn.transaction_status != IDLE:
            conn.execute("ROLLBACK")
        raise


def check_version(conn: psycopg.Connection, where: str) -> int:
    version = conn.execute(SQL["schema_version"]).fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StorageError(f"{where} has jobrt schema version {version}, newer than this jobrt "
                           f"knows ({SCHEMA_VERSION}): upgrade jobrt")
    return version
