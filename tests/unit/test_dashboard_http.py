"""The dashboard over HTTP, in-process (starlette's TestClient, memory storage): every page
and its /api/ twin, the token, CSRF, read-only mode, hidden arguments, bad query strings
and missing records answered with pages, and the command's refusal of a public address
without a token. The real browser test is tests/acceptance/test_dashboard_browser.py."""

from __future__ import annotations

import base64
import time
import urllib.parse
import warnings

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

pytest.importorskip("starlette")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # starlette 1.x prefers httpx2; httpx does the same work here
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient  # noqa: E402

from runtime.cli.main import main  # noqa: E402
from runtime.config.load import config_from_dict  # noqa: E402
from runtime.dashboard.app import create_app  # noqa: E402
from runtime.dashboard.auth import Csrf  # noqa: E402
from runtime.storage import NewJob, Outcome, open_storage  # noqa: E402
from runtime.storage.browse import MinuteRow  # noqa: E402
from runtime.storage.workflows import NewBatch  # noqa: E402
from runtime.supervisor.minutes import MinuteTally  # noqa: E402

SECRET = "s3cret-token"
PAGES = ["/", "/jobs", "/jobs?state=failed", "/jobs?queue=default&name=jobs.examples:add",
         "/jobs?q=1", "/jobs?q=batch+1", "/jobs/1", "/failed", "/batches", "/batches/1",
         "/schedules", "/metrics-charts", "/metrics-charts?range=week"]


def fill(storage) -> dict:
    now = time.time()
    ids = storage.enqueue([NewJob("default", "jobs.examples:add",
                                  orjson.dumps([["private@example.com"], {}]), now)
                           for _ in range(3)])
    storage.enqueue([NewJob("low", "<script>alert(1)</script>", orjson.dumps([[], {}]), now)])
    batch_id, members = storage.create_batch(NewBatch("default", name="nightly"),
                                             [NewJob("default", "jobs.examples:add",
                                                     orjson.dumps([[], {}]), now)], now)
    (claimed,) = storage.claim("s1", ["default"], 1, now + 30, now)
    storage.settle("s1", [Outcome(claimed.id, 1, "failed", now, error="RuntimeError: boom\nmore",
                                  traceback="Traceback ...", queue="default",
                                  name=claimed.name)])
    storage.record_minutes([MinuteRow(int(now // 60 * 60), "default", "jobs.examples:add",
                                      5, 4, 1, 2.5, 1.0, 5, 0.5, 0.2)])
    return {"failed": claimed.id, "pending": ids[1], "batch": batch_id}


def config(**dashboard):
    return config_from_dict({"storage": {"url": "memory://"}, "dashboard": dashboard,
                             "schedules": {"hello": {"job": "jobs.examples:noop", "every": 60}}})


@pytest.fixture
def made():
    storage = open_storage("memory://")
    found = fill(storage)
    return storage, found


def client(storage, read_only=False, token="", **dashboard) -> TestClient:
    app = create_app(config(**dashboard), read_only=read_only, token=token,
                     storage_factory=lambda: storage, csrf=Csrf(b"k" * 32))
    return TestClient(app, raise_server_exceptions=False)


def csrf_of(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_every_page_and_its_json_twin(made):
    storage, found = made
    with client(storage) as c:
        for path in PAGES:
            page = c.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            assert page.headers["content-type"].startswith("text/html")
            api = c.get("/api/overview" if path == "/" else "/api" + path)
            assert api.status_code == 200 and api.headers["content-type"] == "application/json"
        overview = c.get("/api/overview").json()
        queues = {q["queue"]: q for q in overview["queues"]}
        assert queues["default"]["pending"] == 3 and queues["default"]["failed"] == 1
        assert overview["jobs_last_hour"] == 5 and overview["health"]["status"] == "critical"
        # counted runs over the last five minutes and this one's part: 5 in 5 to 6 minutes
        assert 0.8 <= overview["jobs_per_minute"] <= 1.0  # 5 * 60 / 300..360 s, to 0.1
        failed = c.get("/api/failed").json()["jobs"]
        assert [j["id"] for j in failed] == [found["failed"]] and failed[0]["error_line"] == "RuntimeError: boom"
        charts = c.get("/api/metrics-charts").json()
        assert charts["by_queue"][0]["points"][0]["per_minute"] == 5.0
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get("/jobs").text  # escaped
        assert "<script>alert(1)</script>" not in c.get("/jobs").text
        assert c.get("/api/schedules").json()["schedules"][0]["name"] == "hello"


def test_pages_of_jobs_follow_the_cursor(made):
    storage, _ = made
    storage.enqueue([NewJob("bulk", "jobs.examples:noop", b"[[],{}]", 0.0) for _ in range(120)])
    with client(storage) as c:
        first = c.get("/api/jobs?queue=bulk").json()
        second = c.get(f"/api/jobs?queue=bulk&before={first['next']}").json()
        third = c.get(f"/api/jobs?queue=bulk&before={second['next']}").json()
    ids = [j["id"] for page in (first, second, third) for j in page["jobs"]]
    assert len(ids) == 120 == len(set(ids)) and ids == sorted(ids, reverse=True)
    assert third["next"] is None


def test_a_token_is_required_when_set(made):
    storage, _ = made
    with client(storage, token=SECRET) as c:
        assert c.get("/").status_code == 401
        assert "Basic" in c.get("/api/overview").headers["www-authenticate"]
        assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/", headers={"Authorization": "Basic !!"}).status_code == 401
        basic = base64.b64encode(f"anyone:{SECRET}".encode()).decode()
        assert c.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert c.get("/api/jobs", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
        assert c.get("/static/dash.css").status_code == 401


def test_actions_need_the_csrf_token_and_a_post(made):
    storage, found = made
    failed = found["failed"]
    with client(storage) as c:
        assert c.get(f"/jobs/{failed}/retry").status_code == 405
        assert c.post(f"/jobs/{failed}/retry", data={}).status_code == 403
        assert c.post(f"/jobs/{failed}/retry", data={"csrf": "nope"}).status_code == 403
        assert storage.get(failed).state == "failed"
        token = csrf_of(c.get(f"/jobs/{failed}").text)
        done = c.post(f"/jobs/{failed}/retry", data={"csrf": token}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"].startswith(f"/jobs/{failed}?done=")
        assert storage.get(failed).state == "pending"
        assert c.post(f"/jobs/{failed}/retry", data={"csrf": token}).status_code == 409
        api = c.post(f"/api/jobs/{found['pending']}/cancel", headers={"X-CSRF-Token": token})
        assert api.json()["was"] == "pending" and storage.get(found["pending"]).state == "cancelled"
        assert c.post("/api/jobs/424242/cancel", headers={"X-CSRF-Token": token}).status_code == 404
        assert c.post("/api/failed/retry", json={"csrf": token, "ids": []}).status_code == 400
        assert c.post(f"/api/batches/{found['batch']}/cancel",
                      headers={"X-CSRF-Token": token}).json()["cancelled"] is True


def test_read_only_refuses_every_action(made):
    storage, found = made
    with client(storage, read_only=True) as c:
        page = c.get(f"/jobs/{found['failed']}").text
        assert "read-only" in page and ">retry</button>" not in page
        refused = c.post(f"/api/jobs/{found['failed']}/retry",
                         headers={"X-CSRF-Token": Csrf(b"k" * 32).token})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert storage.get(found["failed"]).state == "failed"


def test_show_args_false_hides_arguments_and_results(made):
    storage, found = made
    with client(storage, show_args=False) as c:
        assert "private@example.com" not in c.get(f"/jobs/{found['pending']}").text
        assert "private@example.com" not in c.get("/api/jobs").text
        assert c.get(f"/api/jobs/{found['pending']}").json()["job"]["args"].startswith("(hidden")


@pytest.mark.parametrize("path, status", [
    ("/jobs?state=bogus", 400), ("/jobs?before=abc", 400), ("/jobs?before=-1", 400),
    ("/jobs?queue=two%20words", 400), ("/jobs?batch=99999999999999999999999", 400),
    ("/jobs/abc", 400), ("/jobs/0", 400), ("/jobs/424242", 404), ("/batches/424242", 404),
    ("/metrics-charts?range=year", 400), ("/failed?before=x", 400), ("/nothing/here", 404),
    # digits str.isdigit() takes and int() refuses
    ("/jobs?before=%C2%B2", 400), ("/jobs?q=%23%C2%B9", 400), ("/jobs?q=batch%20%C2%B3", 400)])
def test_bad_addresses_get_error_pages_not_tracebacks(made, path, status):
    storage, _ = made
    with client(storage) as c:
        page = c.get(path)
        api = c.get("/api" + path)
    assert page.status_code == status and "Traceback" not in page.text
    assert "<h1>%d</h1>" % status in page.text
    assert api.status_code == status and api.json()["status"] == status


def test_a_public_address_without_a_token_is_refused(tmp_path, capsys):
    path = tmp_path / "supervisor.toml"
    path.write_text('[storage]\nurl = "sqlite:///jobs.db"\n')
    assert main(["dashboard", "--config", str(path), "--listen", "0.0.0.0:0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dashboard.token" in err and "0.0.0.0" in err
    (tmp_path / "empty").write_text("")
    path.write_text('[storage]\nurl = "sqlite:///jobs.db"\n[dashboard]\npassword_file = "empty"\n')
    assert main(["dashboard", "--config", str(path), "--listen", "0.0.0.0:0"]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["dashboard", "--config", str(path), "--listen", "nowhere:1"]) == 2


def test_the_minute_tally_counts_runs_and_waits_and_gives_rows_back():
    tally = MinuteTally()
    tally.finished(125.0, "q", "a", "succeeded", 0.5)
    tally.finished(130.0, "q", "a", "failed", 1.5)
    tally.finished(185.0, "q", "a", "retried", -1.0)

    class Job:
        queue, name, available_at = "q", "a", 100.0
    tally.claimed(126.0, [Job(), Job()])
    rows = tally.take()
    assert rows == [MinuteRow(120, "q", "a", 2, 1, 1, 2.0, 1.5, 2, 52.0, 26.0),
                    MinuteRow(180, "q", "a", 1, 0, 0, 0.0, 0.0, 0, 0.0, 0.0)]
    assert tally.take() == []
    tally.give_back(rows)
    tally.finished(125.0, "q", "a", "succeeded", 3.0)
    assert tally.take()[0] == MinuteRow(120, "q", "a", 3, 2, 1, 5.0, 3.0, 2, 52.0, 26.0)


# Whatever a visitor types: every page and its /api/ twin answers with a page or an error
# naming the field (400, 404), never a traceback (500).
_PATHS = ["/", "/jobs", "/failed", "/batches", "/schedules", "/metrics-charts", "/jobs/{}", "/batches/{}"]
_KEYS = ["state", "queue", "name", "tag", "batch", "before", "q", "range", "limit", "after"]
# numbers, near-numbers (digits that str.isdigit() takes and int() may refuse: ² ① ٣), and any text
_DIGITS = st.text(alphabet="0123²①٣", min_size=1, max_size=4)
_VALUES = (_DIGITS | st.builds(lambda prefix, body: prefix + body, st.sampled_from(["#", "batch ", "-"]), _DIGITS)
           | st.text(alphabet="0123²①٣.e x\x00%é", max_size=24) | st.text(max_size=24))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(_PATHS), segment=_VALUES, api=st.booleans(),
       query=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=3))
def test_no_query_a_visitor_types_gets_a_traceback(made, path, segment, api, query):
    storage, _ = made
    with client(storage) as c:
        url = ("/api" if api else "") + path.format(urllib.parse.quote(segment, safe=""))
        answer = c.get(url, params=query)
    assert answer.status_code in (200, 400, 404), (url, query, answer.status_code)
