"""q.cancel / `jobrt cancel` with `jobrt start`, on SQLite and PostgreSQL: a pending or
delayed job never runs; a running one has its worker killed and ends cancelled (no
retry); an ended or unknown job is left as it is and the command exits 1."""

from __future__ import annotations

import orjson

from runtime import JobNotFound, connect
from tests.conftest import END_STATES, jobrt, wait_for, write_config


def test_a_running_job_is_killed_and_ends_cancelled(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, pools={"default": {"workers": 1}}, storage=storage)
    supervisor = start_supervisor(config)
    never = tmp_path / "never"
    with connect(config=str(config)) as q:
        running = q.enqueue("jobs.examples:wait_for_file", str(never), _tries=5)
        wait_for(lambda: q.status(running).state == "running", what="the job to start")
        status, out, err = jobrt("cancel", "--config", config, running)
        assert status == 0 and f"job {running}: running: its supervisor kills its worker" in out, out + err
        record = wait_for(lambda: (r := q.status(running)).state in END_STATES and r, 30, "the cancel")
        assert (record.state, record.attempts) == ("cancelled", 1)
        assert record.error == "cancelled while running (its worker was killed)"
        # The pool goes on with a new worker.
        after = q.enqueue("jobs.examples:add", 1, 2)
        assert wait_for(lambda: (r := q.status(after)).state in END_STATES and r, 30).result == 3
    assert f"job {running} (jobs.examples:wait_for_file) attempt 1 cancelled while running" \
        in supervisor.output()


def test_pending_delayed_ended_and_unknown_jobs(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, storage=storage)
    start_supervisor(config)
    with connect(config=str(config)) as q:
        delayed = q.enqueue("jobs.examples:add", 1, 2, _delay=3600)
        done = q.enqueue("jobs.examples:add", 2, 3)
        wait_for(lambda: q.status(done).state == "succeeded", what="a job to finish")
        assert q.cancel(delayed) == "pending" and q.status(delayed).state == "cancelled"
        assert q.cancel(delayed) == "cancelled"  # already ended: left as it is
        try:
            q.cancel(10**9)
        except JobNotFound as exc:
            assert "no job with id 1000000000" in str(exc)
        else:
            raise AssertionError("cancelling an unknown job raised nothing")
        pending = q.enqueue("jobs.examples:add", 3, 4, _delay=3600)
    status, out, err = jobrt("cancel", "--config", config, pending, done, 10**9, "--json")
    assert status == 1, out + err
    assert orjson.loads(out) == {"jobs": [
        {"id": pending, "was": "pending", "outcome": "cancelled"},
        {"id": done, "was": "succeeded", "outcome": "unchanged"},
        {"id": 10**9, "was": None, "outcome": "not found"}]}
    status, out, _ = jobrt("cancel", "--config", config, done)
    assert status == 1 and out == f"job {done}: already succeeded; left as it is\n"
    with connect(config=str(config)) as q:
        assert q.status(pending).state == "cancelled" and q.status(pending).attempts == 0
