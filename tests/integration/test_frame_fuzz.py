"""Nothing a job sends can crash the supervisor: a job that forges frames of any kind, header
and body on its worker's result pipe ends that run (and its worker), never the supervisor.

Hypothesis draws the frames; its seed is printed by the hypothesis plugin on failure and
the examples are derandomized, so a run is reproducible."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime import connect
from runtime.workers import protocol
from tests.conftest import END_STATES, wait_for, write_config

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["$id", "$attempt", "ok", "error", "fail", "release", "returned"]),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=16)


def done_like():
    """Headers shaped like a DONE header, each field drawn from anything plausible or not."""
    field = st.one_of(values, st.just("$id"), st.just("$attempt"))
    status = st.sampled_from(["ok", "error", "fail", "release", "returned", "nope", ""]) | values
    return st.tuples(field, field, status, values, values, values, values).map(list) \
        | st.lists(values, max_size=9)


@st.composite
def one_bad_field(draw):
    """A DONE header addressed to the running job, right but for one field."""
    status = draw(st.sampled_from(["ok", "error", "fail", "release", "returned"]))
    header = ["$id", "$attempt", status, 0.001, 0, 0.0, False]
    header[draw(st.integers(0, 6))] = draw(values)
    return header


def as_text(value) -> str:
    text = json.dumps(value)  # big integers too, which the supervisor's orjson reads as floats
    return text.replace('"$id"', "$id").replace('"$attempt"', "$attempt")  # bare numbers in the job


headers = one_bad_field().map(as_text) | done_like().map(as_text) | st.text(max_size=40) \
    | st.sampled_from(["NaN", "[1e999]", "", "[", "{}"])
bodies = st.sampled_from(["", "null", "{}", '{"error": 3}', '{"error": "x", "traceback": 5}',
                          '{"error": "forged", "traceback": null}', "\udcff", "[1,2]"]) | st.text(max_size=30)
kinds = st.sampled_from([protocol.DONE, protocol.BYE, protocol.BOOT, protocol.RUN, protocol.STOP, protocol.EVENT,
                        0, 255])


@pytest.fixture(scope="module")
def supervised(tmp_path_factory):
    from tests.conftest import RunningSupervisor

    directory = tmp_path_factory.mktemp("frames")
    config = write_config(directory, pools={"default": {"workers": 2, "timeout": 10}})
    supervisor = RunningSupervisor(config)
    try:
        supervisor.wait_message(b"READY=1")
        with connect(config=str(config)) as queue:
            yield supervisor, queue
    finally:
        supervisor.stop()


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=kinds, header=headers, body=bodies)
def test_forged_frames_end_the_run_not_the_supervisor(supervised, kind, header, body):
    supervisor, queue = supervised
    job_id = queue.enqueue("jobs.examples:forge_frame", kind, header, body.encode("utf-8", "replace").decode())
    record = wait_for(lambda: (r := queue.status(job_id)).state in END_STATES and r, 60, "the forging job")
    assert record.state in ("succeeded", "failed")
    assert supervisor.proc.poll() is None, supervisor.output()[-3000:]


def test_the_supervisor_is_still_healthy_after_the_forgeries(supervised):
    supervisor, queue = supervised
    ids = queue.enqueue_many([("jobs.examples:add", (i, 1)) for i in range(20)])
    wait_for(lambda: all(queue.status(i).state == "succeeded" for i in ids), 60, "healthy jobs")
    assert "supervisor failed" not in supervisor.output()


def test_a_forged_result_that_is_not_json_fails_the_run_and_is_never_stored(supervised):
    # Stored, a result that is not JSON broke every reader of the job (q.status, jobrt job,
    # the dashboard) with a traceback.
    _supervisor, queue = supervised
    header = '[$id, $attempt, "ok", 0.1, 0, 0.0, false]'
    job_id = queue.enqueue("jobs.examples:forge_frame", protocol.DONE, header, "not json")
    record = wait_for(lambda: (r := queue.status(job_id)).state in END_STATES and r, 60, "the forging job")
    assert (record.state, record.result) == ("failed", None)
    assert "a result that is not JSON" in record.error
