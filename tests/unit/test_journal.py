"""The record of a resumable Pool run, on a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.errors import JobrtError, PayloadError
from runtime.journal import Journal, call_json
from runtime.pool_task import CALL_ARGS, CALL_ONE, CALL_STAR

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=10,
)


@given(item=json_values)
def test_a_call_has_one_key_whether_submitted_or_mapped(item):
    mapped = call_json(CALL_ONE, item)
    submitted = call_json(CALL_ARGS, ((item,), {}))
    starred = call_json(CALL_STAR, (item,))
    assert mapped == submitted == starred
    assert Journal.key("m:f", mapped) != Journal.key("m:g", mapped)


def test_keyword_order_and_paths_do_not_change_the_key():
    assert call_json(CALL_ARGS, ((), {"a": 1, "b": 2})) == call_json(CALL_ARGS, ((), {"b": 2, "a": 1}))
    assert call_json(CALL_ONE, Path("/x/y")) == call_json(CALL_ONE, "/x/y")


def test_arguments_that_are_not_json_are_refused_clearly():
    with pytest.raises(PayloadError, match="recorded as JSON"):
        call_json(CALL_ONE, object())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(json_values, json_values, st.booleans()), max_size=20))
def test_recorded_results_come_back_after_reopening(tmp_path_factory, calls):
    path = tmp_path_factory.mktemp("run") / "run.db"
    journal = Journal(f"sqlite:///{path}")
    expected = {}
    for args, result, ok in calls:
        call = call_json(CALL_ONE, args)
        key = Journal.key("m:f", call)
        if ok:
            journal.succeeded(key, "m:f", call, result, 1)
            expected[key] = result
        else:
            journal.failed(key, "m:f", call, "ValueError: no", "Traceback...", 2)
            expected.pop(key, None)
    journal.close()
    reopened = Journal(str(path))
    keys = [Journal.key("m:f", call_json(CALL_ONE, args)) for args, _, _ in calls]
    found = {key: orjson.loads(value) for key, value in reopened.lookup(keys).items()}
    reopened.close()
    assert found == expected


def test_a_result_that_is_not_json_runs_again_next_time(tmp_path):
    journal = Journal(tmp_path / "run.db")
    call = call_json(CALL_ONE, 1)
    key = Journal.key("m:f", call)
    journal.succeeded(key, "m:f", call, object(), 1)
    journal.flush(time.monotonic(), force=True)
    assert journal.lookup([key]) == {}
    journal.close()


def test_one_file_serves_one_pool_at_a_time(tmp_path):
    first = Journal(tmp_path / "run.db")
    with pytest.raises(JobrtError, match="in use by another running pool"):
        Journal(tmp_path / "run.db")
    first.close()
    Journal(tmp_path / "run.db").close()


@pytest.mark.parametrize("url, text", [
    ("postgresql://u@h/db", "records its runs in a SQLite file"),
    ("sqlite://host/x.db", "names a host"),
])
def test_bad_storage_urls_are_refused(url, text):
    with pytest.raises(JobrtError, match=text):
        Journal(url)


def test_a_file_that_is_not_a_record_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database, just text " * 100)
    with pytest.raises(JobrtError, match="not a usable run record"):
        Journal(tmp_path / "notes.txt")
