"""`@fn.on_failure` with `jobrt start`, on SQLite and PostgreSQL: the hook runs once, in a
worker, with the failed job's record, after the job failed for good by an exception or a
timeout kill; not after a retry nor a success; its own failure is recorded on its job."""

from __future__ import annotations

import json

import pytest

from runtime import connect, job
from tests.conftest import END_STATES, wait_for, write_config


def hook_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_hook_runs_once_after_the_last_try(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, storage=storage)
    start_supervisor(config)
    raised, timed_out = tmp_path / "raised.jsonl", tmp_path / "timed_out.jsonl"
    with connect(config=str(config)) as q:
        first = q.enqueue("jobs.examples:fail_with_hook", str(raised))
        second = q.enqueue("jobs.examples:fail_with_hook", str(timed_out), 30, _timeout=0.3)
        for job_id in (first, second):
            wait_for(lambda: q.status(job_id).state in END_STATES, 60, "the job to fail")
        # Both hooks' jobs succeed, and nothing else is left to run.
        wait_for(lambda: q.counts()["default"]["succeeded"] == 2, 60, "both hooks to run")
        assert q.counts()["default"]["pending"] == q.counts()["default"]["running"] == 0
    [record] = hook_lines(raised)
    assert (record["id"], record["name"], record["attempts"]) == (first, "jobs.examples:fail_with_hook", 2)
    assert record["args"] == [str(raised)] and record["error"].startswith("RuntimeError: failed with a hook")
    [record] = hook_lines(timed_out)
    assert record["id"] == second and "timed out after 0.3 s" in record["error"]


def test_a_hook_that_fails_is_recorded_on_its_own_job_and_not_retried(tmp_path, start_supervisor,
                                                                      storage):
    config = write_config(tmp_path, storage=storage)
    start_supervisor(config)
    missing = tmp_path / "no" / "such" / "dir.jsonl"  # the hook cannot open it
    with connect(config=str(config)) as q:
        failed = q.enqueue("jobs.examples:fail_with_hook", str(missing), _tries=1)
        wait_for(lambda: q.status(failed).state == "failed", 60, "the job to fail")
        hook = wait_for(lambda: next((r for r in q.storage.failed() if r.id != failed), None), 60,
                        "the hook to fail")
    assert (hook.name, hook.attempts) == ("jobs.examples:fail_with_hook_failed", 1)
    assert "FileNotFoundError" in hook.error and hook.args[0]["id"] == failed


def test_a_hook_is_a_plain_function_and_one_per_job():
    @job
    def task():
        pass

    @task.on_failure
    def task_failed(record):
        pass

    with pytest.raises(ValueError, match="already has a failure hook"):
        task.on_failure(lambda record: None)
    with pytest.raises(TypeError, match="decorates a plain function"):
        task.on_failure(task)
