"""The `jobrt` command as a user types it, in a subprocess."""

from __future__ import annotations

import json

import pytest

from tests.conftest import jobrt, wait_for, write_config


def test_init_writes_a_config_that_starts_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "supervisor.toml"
    code, out, err = jobrt("init", path)
    assert code == 0 and path.exists(), err
    assert "#" in path.read_text()  # commented
    code, _, err = jobrt("init", path)
    assert code == 2 and "exists" in err and "Traceback" not in err


@pytest.mark.parametrize("text,key", [
    ("[pools.default]\nworkers = 'two'\n", "pools.default.workers"),
    ("[storage]\nurll = 'x'\n", "storage.urll"),
    ("[pools.default\n", "supervisor.toml"),
    ("[jobs]\nmodules = ['no_such_module_here']\n", "jobs.modules"),
])
def test_bad_config_is_one_clear_line_and_exit_2(tmp_path, text, key):
    (tmp_path / "supervisor.toml").write_text(text)
    code, out, err = jobrt("start", "--config", tmp_path / "supervisor.toml", cwd=tmp_path)
    assert code == 2, err
    assert key in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_database_path_is_exit_2(tmp_path):
    config = write_config(tmp_path, storage={"url": "sqlite:////proc/no/such/dir/jobs.db"})
    code, _, err = jobrt("start", "--config", config)
    assert code == 2 and "/proc/no/such/dir/jobs.db" in err and "Traceback" not in err


def test_enqueue_errors_are_exit_2(tmp_path):
    config = write_config(tmp_path)
    code, _, err = jobrt("enqueue", "--config", config, "jobs.examples:nope")
    assert code == 2 and "jobs.examples:nope" in err and "Traceback" not in err
    code, _, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", "--args", "[1,")
    assert code == 2 and "--args" in err
    code, _, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", "--args", "[1e999]")
    assert code == 2 and "infinity" in err and "Traceback" not in err


def test_enqueue_status_and_job_as_json(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    code, out, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", "--args", '["hi"]',
                           "--queue", "low", "--delay", "3600")
    assert code == 0, err
    job_id = int(out)
    code, out, _ = jobrt("status", "--config", config, "--json")
    status = json.loads(out)
    assert status["queues"]["low"]["delayed"] == 1 and status["workers"] == []
    start_supervisor(config)

    def workers():
        return json.loads(jobrt("status", "--config", config, "--json")[1])["workers"]

    live = wait_for(lambda: len(workers()) == 2 and workers(), what="two workers in status")
    assert {"pid", "pool", "state", "jobs", "rss"} <= set(live[0])
    code, out, _ = jobrt("job", "--config", config, job_id, "--json")
    record = json.loads(out)
    assert {"id", "name", "queue", "state", "attempts", "error", "result"} <= set(record)
    assert (record["state"], record["queue"]) == ("pending", "low")
    code, out, _ = jobrt("status", "--config", config)
    assert code == 0 and "low" in out and "worker" in out
    code, _, err = jobrt("job", "--config", config, 999999)
    assert code == 1 and "999999" in err


def test_failed_jobs_admin(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    start_supervisor(config)
    code, out, _ = jobrt("enqueue", "--config", config, "jobs.examples:fail", "--args", '["nope"]')
    job_id = int(out)

    def failed():
        return json.loads(jobrt("failed", "list", "--config", config, "--json")[1])

    wait_for(lambda: [r["id"] for r in failed()] == [job_id], what="the job in the failed store")
    code, out, _ = jobrt("failed", "show", "--config", config, job_id)
    assert code == 0 and "RuntimeError: nope" in out and "Traceback" in out
    assert jobrt("failed", "retry", "--config", config, job_id)[0] == 0
    wait_for(lambda: json.loads(jobrt("job", "--config", config, job_id, "--json")[1])["attempts"] == 1
             and failed(), what="the retried job to fail again")
    assert jobrt("failed", "forget", "--config", config, job_id)[0] == 0
    assert failed() == []
    assert jobrt("failed", "retry", "--config", config)[0] == 2
