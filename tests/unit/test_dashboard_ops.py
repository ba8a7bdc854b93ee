"""The dashboard's part of the operations verbs, in-process (memory storage): paused queues
on the overview (page and /api twin), tags on a job's page, the jobs page filtered by tag,
and a bad tag in the query string answered with a 400 page."""

from __future__ import annotations

import time
import warnings

import orjson
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient  # noqa: E402

from runtime.config.load import config_from_dict  # noqa: E402
from runtime.dashboard.app import create_app  # noqa: E402
from runtime.dashboard.auth import Csrf  # noqa: E402
from runtime.storage import NewJob, open_storage  # noqa: E402


@pytest.fixture
def dashboard():
    storage = open_storage("memory://")
    now = time.time()
    ids = storage.enqueue([NewJob("default", "jobs.examples:add", orjson.dumps([[], {}]), now,
                                  tags=tags) for tags in (("report",), (), ("report", "user:7"))])
    storage.pause_queues(["low"], now)
    app = create_app(config_from_dict({"storage": {"url": "memory://"}}), token="",
                     storage_factory=lambda: storage, csrf=Csrf(b"k" * 32))
    with TestClient(app, raise_server_exceptions=False) as http:  # runs the app's lifespan
        yield http, ids


def test_the_overview_shows_paused_queues(dashboard):
    http, _ = dashboard
    overview = http.get("/api/overview").json()
    assert overview["paused_queues"] == ["low"]
    assert {q["queue"]: q["paused"] for q in overview["queues"]} == {"default": False, "low": True}
    page = http.get("/").text
    assert '<tr data-queue="low">' in page and "(paused)" in page


def test_the_jobs_page_filters_by_tag_and_a_job_shows_its_tags(dashboard):
    http, ids = dashboard
    found = http.get("/api/jobs", params={"tag": "report"}).json()
    assert [job["id"] for job in found["jobs"]] == [ids[2], ids[0]]
    assert found["jobs"][0]["tags"] == ["report", "user:7"]
    assert 'name="tag" value="report"' in http.get("/jobs", params={"tag": "report"}).text
    assert '<a href="/jobs?tag=user%3A7">user:7</a>' in http.get(f"/jobs/{ids[2]}").text
    bad = http.get("/jobs", params={"tag": "x" * 101})
    assert bad.status_code == 400 and "tag must be a tag" in bad.text
