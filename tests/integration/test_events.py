"""runtime.events with `jobrt start`: the hooks of jobs/event_hooks.py run in workers, in
registration order, with the job's record; after_exception knows whether the job will be
retried; after_failure follows every failure for good, also of a run whose worker was
killed; a hook that raises is logged and changes no outcome. The hooks write JSON lines
to a file, read once the job has ended (they run before their worker reports it)."""

from __future__ import annotations

import json
import signal

import pytest

from runtime import connect
from tests.conftest import END_STATES, REPO, jobrt, wait_for, write_config

JOBS = {"modules": ["jobs.examples", "jobs.event_hooks"], "path": [str(REPO)]}


@pytest.fixture
def events_log(tmp_path):
    return tmp_path / "events.jsonl"


def seen(path, job_id=None) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if job_id is None or line["id"] == job_id]


def hooks(path, job_id) -> list[tuple]:
    return [(line["hook"], line["attempt"]) for line in seen(path, job_id)]


def start(tmp_path, start_supervisor, events_log, jobs=JOBS, **pool):
    config = write_config(tmp_path, pools={"default": pool}, jobs={**JOBS, **jobs})
    return config, start_supervisor(config, env={"JOBRT_EVENTS_LOG": str(events_log)})


def ended(q, job_id):
    return wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 60, f"job {job_id} to end")


def test_a_success_runs_the_before_hooks_in_order_then_after_success(tmp_path, start_supervisor, events_log):
    config, _ = start(tmp_path, start_supervisor, events_log)
    with connect(config=str(config)) as q:
        job_id = q.enqueue("jobs.event_hooks:succeed", "x", _queue="high")
        assert ended(q, job_id).state == "succeeded"
    assert hooks(events_log, job_id) == [("first_before", 1), ("second_before", 1), ("after_success", 1)]
    first, second, after = seen(events_log, job_id)
    assert {k: first[k] for k in ("event", "name", "queue", "args", "kwargs", "result", "error", "will_retry")} \
        == {"event": "before_run", "name": "jobs.event_hooks:succeed", "queue": "high", "args": ["x"],
            "kwargs": {}, "result": None, "error": None, "will_retry": None}
    assert (after["event"], after["result"]) == ("after_success", {"value": "x"})
    assert first["pid"] == second["pid"] == after["pid"]  # all in the worker that ran the job


def test_after_exception_says_whether_the_job_will_retry(tmp_path, start_supervisor, events_log):
    config, _ = start(tmp_path, start_supervisor, events_log)
    with connect(config=str(config)) as q:
        by_tries = q.enqueue("jobs.event_hooks:explode")  # tries=2
        by_exceptions = q.enqueue("jobs.event_hooks:explode", _tries=5, _max_exceptions=2)
        for job_id in (by_tries, by_exceptions):
            record = ended(q, job_id)
            assert record.state == "failed"
            assert [(line["attempt"], line["will_retry"]) for line in seen(events_log, job_id)
                    if line["event"] == "after_exception"] == [(1, True), (2, False)]
            [failure] = [line for line in seen(events_log, job_id) if line["event"] == "after_failure"]
            # the same error as stored: the worker was told how the supervisor would end it
            assert (failure["attempt"], failure["error"]) == (2, record.error)
            assert failure["traceback"].startswith("Traceback") and "explode" in failure["traceback"]
    assert hooks(events_log, by_tries) == [
        ("first_before", 1), ("second_before", 1), ("after_exception", 1),
        ("first_before", 2), ("second_before", 2), ("after_exception", 2), ("after_failure", 2)]
    assert seen(events_log, by_exceptions)[-1]["error"].endswith("(exception 2 of max_exceptions 2)")


def test_fail_and_a_release_on_the_last_try_run_after_failure_only(tmp_path, start_supervisor, events_log):
    config, _ = start(tmp_path, start_supervisor, events_log)
    with connect(config=str(config)) as q:
        given_up = q.enqueue("jobs.event_hooks:give_up")
        released = q.enqueue("jobs.event_hooks:release_always")  # tries=2
        given_up_record, released_record = ended(q, given_up), ended(q, released)
    assert hooks(events_log, given_up) == [("first_before", 1), ("second_before", 1), ("after_failure", 1)]
    assert seen(events_log, given_up)[-1]["error"] == given_up_record.error == "given up"
    assert hooks(events_log, released) == [("first_before", 1), ("second_before", 1),
                                           ("first_before", 2), ("second_before", 2), ("after_failure", 2)]
    assert seen(events_log, released)[-1]["error"] == released_record.error
    assert "released itself on its last try" in released_record.error


def test_a_raising_hook_is_logged_and_changes_nothing(tmp_path, start_supervisor, events_log):
    config, supervisor = start(tmp_path, start_supervisor, events_log)
    with connect(config=str(config)) as q:
        succeeding = q.enqueue("jobs.event_hooks:succeed", 7, hooks_raise=True)
        failing = q.enqueue("jobs.event_hooks:explode", hooks_raise=True, _tries=1)
        record = ended(q, succeeding)
        assert (record.state, record.result, record.attempts) == ("succeeded", {"value": 7}, 1)
        record = ended(q, failing)
        assert (record.state, record.attempts) == ("failed", 1)
        assert record.error == "RuntimeError: explode (attempt 1 of 1)"
    # the hooks after the raising one still ran
    assert hooks(events_log, succeeding) == [("first_before", 1), ("second_before", 1), ("after_success", 1)]
    assert [h for h, _ in hooks(events_log, failing)][-1] == "after_failure"
    for job_id, event in ((succeeding, "before_run"), (failing, "before_run"), (failing, "after_failure")):
        line = (f"jobrt: event hook jobs.event_hooks:_raise_if_asked ({event}) raised for job {job_id}: "
                f"RuntimeError: this {event} hook raises")
        wait_for(lambda: line in supervisor.output(), 30, f"the log line {line!r}")


def test_a_job_an_operator_retried_runs_after_operator_retry_first(tmp_path, start_supervisor, events_log):
    config, _ = start(tmp_path, start_supervisor, events_log)
    with connect(config=str(config)) as q:
        job_id = q.enqueue("jobs.event_hooks:explode", _tries=1)
        assert ended(q, job_id).state == "failed"
        status, out, err = jobrt("failed", "retry", "--config", config, job_id)
        assert status == 0, out + err
        wait_for(lambda: [h for h, _ in hooks(events_log, job_id)].count("after_failure") == 2, 60,
                 "the retried run to fail again")
    assert hooks(events_log, job_id) == [
        ("first_before", 1), ("second_before", 1), ("after_exception", 1), ("after_failure", 1),
        ("after_operator_retry", 1), ("first_before", 1), ("second_before", 1), ("after_exception", 1),
        ("after_failure", 1)]
    lines = seen(events_log, job_id)
    assert lines[4]["event"] == "after_operator_retry" and lines[4]["retried_at"] > 0
    assert [line["retried_at"] for line in lines[:4] + lines[5:]] == [None] * 8


@pytest.mark.parametrize("workers", [2, 1])
def test_a_run_killed_on_its_last_try_runs_after_failure_in_a_worker(tmp_path, start_supervisor, events_log,
                                                                     workers):
    """With one worker, the event waits for the worker that replaces the killed one."""
    config, _ = start(tmp_path, start_supervisor, events_log, workers=workers)
    with connect(config=str(config)) as q:
        job_id = q.enqueue("jobs.event_hooks:hang", _timeout=0.3, _tries=2, _backoff=0)
        record = ended(q, job_id)
        assert record.state == "failed" and "timed out after 0.3 s" in record.error
        wait_for(lambda: any(line["event"] == "after_failure" for line in seen(events_log, job_id)), 30,
                 "after_failure of the killed run")
    # no after_exception for a timeout, nothing after the first (retried) kill
    assert hooks(events_log, job_id) == [("first_before", 1), ("second_before", 1),
                                         ("first_before", 2), ("second_before", 2), ("after_failure", 2)]
    failure = seen(events_log, job_id)[-1]
    assert (failure["error"], failure["name"], failure["args"]) == (record.error, "jobs.event_hooks:hang", [])
    assert failure["pid"] != seen(events_log, job_id)[-2]["pid"]  # not the killed worker


def test_hooks_that_a_reload_brings_run_in_the_new_workers(tmp_path, start_supervisor, events_log):
    config, supervisor = start(tmp_path, start_supervisor, events_log, jobs={"modules": ["jobs.examples"]})
    with connect(config=str(config)) as q:
        before = q.enqueue("jobs.examples:add", 1, 2)
        assert ended(q, before).state == "succeeded"
        assert seen(events_log) == []
        write_config(tmp_path, jobs=JOBS)
        supervisor.signal(signal.SIGHUP)
        supervisor.wait_message(b"RELOADING=1")
        supervisor.wait_message(b"READY=1")
        after = q.enqueue("jobs.examples:fail", "boom", _tries=1)
        assert ended(q, after).state == "failed"
    assert [h for h, _ in hooks(events_log, after)] == ["first_before", "second_before", "after_exception",
                                                        "after_failure"]
