"""A database as an older jobrt left it, for the migration tests."""

from __future__ import annotations

import sqlite3

from runtime.storage import sqlfile
from runtime.storage.sqlite_file import MIGRATIONS


def sqlite_at_version(path, version: int) -> sqlite3.Connection:
    """A connection to a new file at schema `version`, for the test to fill and close."""
    conn = sqlite3.connect(path, isolation_level=None)
    for _, sql in MIGRATIONS[:version]:
        for statement in sqlfile.statements(sql):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def postgres_at_version(conn, version: int) -> None:
    """Bring the empty PostgreSQL database of `conn` (autocommit) to schema `version`."""
    from runtime.storage.pgschema import MIGRATIONS as PG_MIGRATIONS, SQL

    conn.execute(SQL["migrations_table"])
    for number, sql in PG_MIGRATIONS[:version]:
        conn.execute(sql)
        conn.execute("INSERT INTO jobrt_migrations VALUES (%s, 0)", (number,))
