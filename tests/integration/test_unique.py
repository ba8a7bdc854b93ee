"""unique, unique_for and unique_until as users meet them: the options' rules, a storm of
concurrent enqueues of one key from several processes (one job), the CLI saying a
duplicate, and unique_until="start" with `jobrt start`; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runtime import PayloadError, connect, job
from tests.conftest import END_STATES, REPO, jobrt, wait_for, write_config

STORM = """
import sys
from runtime import connect
with connect(config=sys.argv[1]) as q:
    print(sorted({q.enqueue("jobs.examples:echo", "storm", _unique="storm-key") for _ in range(25)}))
"""


def test_unique_options_need_a_key_and_valid_values():
    with pytest.raises(ValueError, match=r"^@job\(unique_for=\.\.\.\): needs unique=True or a key"):
        job(unique_for=60)(lambda: None)
    with pytest.raises(ValueError, match=r'^@job\(unique_until=\.\.\.\): must be "start" or "end"'):
        job(unique=True, unique_until="later")(lambda: None)
    with connect("memory://") as q:
        with pytest.raises(PayloadError, match="_unique_for needs a unique key"):
            q.enqueue("jobs.examples:add", 1, 2, _unique_for=60)
        with pytest.raises(PayloadError, match="_unique_for must be"):
            q.enqueue("jobs.examples:add", 1, 2, _unique="k", _unique_for=0)


def test_a_storm_of_concurrent_enqueues_of_one_key_makes_one_job(tmp_path, storage):
    config = write_config(tmp_path, storage=storage)
    with connect(config=str(config)) as q:  # creates the schema before the storm
        q.counts()
    storm = [subprocess.Popen([sys.executable, "-c", STORM, str(config)], stdout=subprocess.PIPE,
                              text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
             for _ in range(4)]
    ids = [json.loads(p.communicate(timeout=60)[0]) for p in storm]
    assert all(p.returncode == 0 for p in storm)
    assert len({i for found in ids for i in found}) == 1, ids
    with connect(config=str(config)) as q:
        assert q.counts()["default"]["pending"] == 1


def test_the_cli_says_a_duplicate_and_unique_until_start_frees_the_key(tmp_path, start_supervisor,
                                                                      storage):
    config = write_config(tmp_path, storage=storage)
    status, first, _ = jobrt("enqueue", "--config", config, "jobs.examples:once_per_text",
                             "--args", '["a"]')
    assert status == 0
    status, out, err = jobrt("enqueue", "--config", config, "jobs.examples:once_per_text",
                             "--args", '["a"]', "--json")
    assert status == 0 and json.loads(out) == {"id": int(first), "duplicate": True}
    assert f"a duplicate: job {int(first)} holds this job's unique key" in err
    release = tmp_path / "release"
    with connect(config=str(config)) as q:  # before any supervisor: nothing can start yet
        running = q.enqueue("jobs.examples:wait_for_file", str(release), _unique="w",
                            _unique_until="start")
        assert q.enqueue("jobs.examples:wait_for_file", str(release), _unique="w") == running
    start_supervisor(config)
    with connect(config=str(config)) as q:
        wait_for(lambda: q.status(int(first)).state in END_STATES, what="the unique job to run")
        # Ended: its key is free again.
        assert q.enqueue("jobs.examples:once_per_text", "a") != int(first)
        # unique_until="start": a second job while the first runs.
        wait_for(lambda: q.status(running).state == "running", what="the job to start")
        second = q.enqueue("jobs.examples:wait_for_file", str(release), _unique="w")
        assert second != running
        release.touch()
        for job_id in (running, second):
            wait_for(lambda: q.status(job_id).state in END_STATES, what="both jobs to end")
