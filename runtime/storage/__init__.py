"""Durable job storage: `open_storage(url)` picks a backend from a URL.

Accepted URLs:

    sqlite:///relative/path.db    relative to `base_dir` (the config file's directory),
                                  or to the current directory when base_dir is None
    sqlite:////absolute/path.db   four slashes: an absolute path
    memory://                     a new, empty in-process store (tests)
    postgresql://user@host:port/dbname, postgres://...
                                  PostgreSQL (psycopg 3); libpq fills in what the url
                                  leaves out from PGHOST, PGPORT, PGUSER, PGPASSWORD,
                                  PGDATABASE, ~/.pgpass: postgresql:///dbname and even
                                  postgresql:// work

Backends implement the verbs of `runtime.storage.base.Storage`. A url that is
wrong in itself (unknown scheme, a SQLite url naming no file or holding a null
byte, a malformed PostgreSQL url) raises `StorageUrlError`, a StorageError that
callers may treat as a configuration error rather than an outage.
"""

from __future__ import annotations

import os
from urllib.parse import unquote

from runtime.errors import StorageError
from runtime.storage.base import (
    CANCELLED, ENDED, FAILED, PENDING, PRUNE_BATCH, RUNNING, STATES, SUCCEEDED, ClaimedJob,
    JobRecord, NewJob, Outcome, Storage, SupervisorRow, decode_record,
)

__all__ = [
    "open_storage", "sqlite_path", "Storage", "StorageError", "StorageUrlError", "NewJob", "ClaimedJob", "Outcome",
    "JobRecord", "SupervisorRow", "decode_record", "PENDING", "RUNNING", "SUCCEEDED", "FAILED",
    "CANCELLED", "STATES", "ENDED", "PRUNE_BATCH", "ROLES",
]

ROLES = ("client", "supervisor")


class StorageUrlError(StorageError):
    """The storage url itself is wrong: fix the configuration; retrying cannot help."""


ACCEPTED = ("sqlite:///relative/path.db, sqlite:////absolute/path.db, "
            "postgresql://user@host/db or memory://")


def open_storage(url: str, role: str = "client", base_dir: str | None = None,
                 create: bool = True, call_timeout: float | None = None) -> Storage:
    """Open the storage named by `url` for `role` ("client" or "supervisor").

    With `create=False` a SQLite database file that does not exist yet is not
    created: StorageError says so (what read-only commands want). `call_timeout`
    (seconds) bounds each call's wait for a PostgreSQL server (SQLite's supervisor
    role waits at most its busy timeout on a lock).

    Raises StorageError with one line naming the problem when the storage cannot
    be opened, StorageUrlError (a StorageError) when the URL is not understood.
    """
    if role not in ROLES:
        raise ValueError(f"role must be 'client' or 'supervisor', not {role!r}")
    if not isinstance(url, str) or "://" not in url:
        shown = repr(url) if "@" not in str(url) else "(not shown: it may hold a password)"
        raise StorageUrlError(f"storage url {shown} is not a URL: use {ACCEPTED}")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        from runtime.storage.sqlite import SqliteStorage
        return SqliteStorage(sqlite_path(url, base_dir), role, create=create)
    if scheme == "memory":
        from runtime.storage.memory import MemoryStorage
        return MemoryStorage()
    if scheme in ("postgresql", "postgres"):
        # The URL may hold a password: it is never echoed, in errors or repr.
        try:
            from runtime.storage.postgres import PostgresStorage
        except ImportError:
            raise StorageError("PostgreSQL storage needs psycopg 3: pip install "
                               "'psycopg[binary]' (or jobrt[postgres])") from None
        return PostgresStorage(url, role, call_timeout)
    raise StorageUrlError(f"unsupported storage url scheme {scheme!r:.40}: use {ACCEPTED}")


def sqlite_path(url: str, base_dir: str | None = None) -> str:
    """The absolute file path an `sqlite:///` URL names."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise StorageUrlError(f"storage url {url!r} names a host; SQLite takes a file: "
                           f"sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if "?" in rest or "#" in rest:
        raise StorageUrlError(f"storage url {url!r}: SQLite urls take no query parameters")
    path = unquote(rest[1:])
    if "\0" in path:
        raise StorageUrlError(f"storage url {url!r} holds a null byte (%00), which no file "
                              f"name can: e.g. sqlite:///var/jobrt.db")
    if not path or path.endswith("/"):
        raise StorageUrlError(f"storage url {url!r} names no database file: "
                           f"e.g. sqlite:///var/jobrt.db")
    if path == ":memory:":
        raise StorageUrlError("storage url sqlite:///:memory: is not supported: an in-memory "
                           "database is private to one connection; use memory:// for tests")
    return os.path.abspath(os.path.join(base_dir if base_dir is not None else os.getcwd(), path))
