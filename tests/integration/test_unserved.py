"""Jobs no worker will ever run: refused at enqueue when the client knows the config,
flagged by `jobrt health` and `jobrt status` (from the live supervisors' heartbeats)
when a client without it stored them."""

from __future__ import annotations

import json

import pytest

from runtime import PayloadError, UnknownJob, connect
from tests.conftest import jobrt, wait_for, write_config


def test_jobs_no_live_supervisor_runs_are_flagged_and_refused(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    start_supervisor(config)
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as q:  # no config: nothing is checked
        served = q.enqueue("jobs.examples:echo", "ran")
        q.enqueue("jobs.examples:echo", "never", _queue="emails")
        # Importable but not in [jobs] modules; delayed, or the supervisor would claim it
        # at once and fail it ("not registered in this worker's job modules").
        q.enqueue("jobs.chaos:quick", "/dev/null", _delay=3600)
        wait_for(lambda: q.status(served).state == "succeeded", what="the served job to run")

    code, out, err = jobrt("health", "--config", config)
    assert code == 1, (out, err)
    assert out.splitlines() == [
        "warning: 1 pending job in queues no live pool serves: emails (1)",
        "warning: 1 pending job whose name no live supervisor registers: jobs.chaos:quick (1)"]
    code, out, err = jobrt("status", "--config", config, "--json")
    assert code == 0, err
    status = json.loads(out)
    assert [(p["kind"], p.get("queue") or p["name"], p["pending"]) for p in status["problems"]] == [
        ("queue", "emails", 1), ("job", "jobs.chaos:quick", 1)]
    assert status["problems"][0]["message"] == "queue emails: 1 pending job, but no live pool serves it"
    assert status["problems"][1]["message"] == ("job jobs.chaos:quick: 1 pending, no live supervisor "
                                                "registers it")

    with connect(config=str(config)) as q:  # the config known: both refused at enqueue
        with pytest.raises(PayloadError) as refused:
            q.enqueue("jobs.examples:echo", "never", _queue="emails")
        assert (f"queue 'emails' is served by no pool in {config} (pools: default: high, default, "
                f"low); add it to a pool's queues or pass _queue=") in str(refused.value)
        with pytest.raises(UnknownJob) as refused:
            q.enqueue_many([("jobs.examples:echo", ("fine",)), ("jobs.chaos:quick", ("/dev/null",))])
        assert str(refused.value).startswith(
            f"job 'jobs.chaos:quick' is not in [jobs] modules of {config}, so no worker would run "
            f"it; move it into a module listed there")
        counts = q.counts()
        assert sum(c["pending"] + c["delayed"] for c in counts.values()) == 2  # the two above only
