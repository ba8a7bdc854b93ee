"""The storage every contract test runs against: memory (the model), SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from runtime.storage import open_storage


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "memory":
        storage = open_storage("memory://")
    elif request.param == "postgres":
        storage = open_storage(request.getfixturevalue("pg_url"), role="supervisor")
    else:
        storage = open_storage("sqlite:///jobs.db", role="supervisor", base_dir=str(tmp_path))
    yield storage
    storage.close()
