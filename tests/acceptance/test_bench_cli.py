"""`jobrt bench` as a user runs it against a running supervisor: the figures, no job of its
own left behind (also when interrupted), and its refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import tomli_w

from runtime.bench_jobs import NOOP
from runtime.storage import open_storage
from tests.conftest import REPO, jobrt, wait_for, write_config

FIGURES = ("pickup_p50_ms", "pickup_p99_ms", "enqueue_one_jobs_per_s", "enqueue_bulk_jobs_per_s",
           "drain_jobs_per_s", "drain_seconds")


def bench_jobs_in(config, url: str = "sqlite:///jobs.db") -> list:
    """The bench's jobs still in storage, in any state."""
    storage = open_storage(url, role="client", base_dir=str(config.parent))
    try:
        return storage.jobs_page(name=NOOP, limit=500)
    finally:
        storage.close()


def test_bench_prints_the_figures_and_removes_exactly_its_jobs(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, storage=storage)
    start_supervisor(config)
    code, out, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", "--args", '["mine"]',
                           "--queue", "high", "--delay", "3600")
    assert code == 0, err
    mine = int(out)
    code, out, err = jobrt("bench", "--config", config, "--jobs", "300", "--probes", "5", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["queue"] == "high" and report["supervisors"] == 1 and report["workers"] == 2
    assert report["jobs"] == 300 and report["probes"] == 5 and report["enqueue_one_jobs"] == 300
    assert all(report[key] > 0 for key in FIGURES), report
    assert "drain: 300 jobs" in err and "removing the" in err  # progress, on stderr
    assert bench_jobs_in(config, storage["url"]) == []
    code, out, err = jobrt("job", "--config", config, mine, "--json")
    assert code == 0 and json.loads(out)["state"] == "pending"  # a user's job stays

    # A user's job running on the bench's queue: the bench warns that it competes.
    release = tmp_path / "release"
    code, out, err = jobrt("enqueue", "--config", config, "jobs.examples:wait_for_file", "--args",
                           json.dumps([str(release)]), "--queue", "high")
    busy = int(out)
    wait_for(lambda: json.loads(jobrt("job", "--config", config, busy, "--json")[1])["state"] == "running",
             what="the user's job to run")
    code, out, err = jobrt("bench", "--config", config, "--jobs", "50", "--probes", "3")
    assert code == 0, err
    assert out.splitlines()[0].startswith("jobrt bench: " + storage["url"].split(":")[0]) and "queue high" in out
    assert "pickup latency" in out and out.count("jobs/s") == 3
    assert "warning: queue high holds 1 pending or running jobs of its own" in err
    assert bench_jobs_in(config, storage["url"]) == []
    release.write_text("go")
    wait_for(lambda: json.loads(jobrt("job", "--config", config, busy, "--json")[1])["state"] == "succeeded",
             what="the user's job to end")


def test_bench_removes_its_jobs_when_interrupted(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    start_supervisor(config)
    errors = tmp_path / "bench.err"
    with open(errors, "wb") as stderr:
        bench = subprocess.Popen([sys.executable, "-m", "runtime.cli", "bench", "--config", str(config),
                                  "--jobs", "200000", "--probes", "2", "--json"],
                                 stdout=subprocess.PIPE, stderr=stderr,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))
        wait_for(lambda: b"enqueue bulk" in errors.read_bytes(), 60, "the bulk enqueue to start")
        bench.send_signal(signal.SIGINT)
        out, _ = bench.communicate(timeout=120)
    assert bench.returncode == 130, errors.read_text()
    assert json.loads(out)["exit"] == 130
    assert "every job it made was removed" in errors.read_text()
    assert bench_jobs_in(config) == []


def test_bench_refuses_without_a_live_supervisor(tmp_path):
    config = write_config(tmp_path)
    code, out, err = jobrt("enqueue", "--config", config, "jobs.examples:echo")  # makes the database
    assert code == 0, err
    code, out, err = jobrt("bench", "--config", config, "--jobs", "10")
    assert code == 1 and out == ""
    assert err.startswith("jobrt: no live supervisor for ") and "jobrt start --config" in err
    assert len(err.splitlines()) == 1
    code, out, err = jobrt("bench", "--config", config, "--json")
    assert code == 1 and json.loads(out)["exit"] == 1 and "no live supervisor" in json.loads(out)["error"]


def test_bench_refuses_a_queue_no_live_supervisor_serves(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    start_supervisor(config)
    other = tmp_path / "other.toml"  # the same database, with a pool no supervisor runs
    document = {"storage": {"url": "sqlite:///jobs.db"}, "jobs": {"modules": ["jobs.examples"]},
                "pools": {"default": {"queues": ["high"]}, "spare": {"queues": ["spare"]}}}
    other.write_text(tomli_w.dumps(document))
    code, out, err = jobrt("bench", "--config", other, "--queue", "spare")
    assert code == 1, err
    assert "no live supervisor serves queue 'spare'" in err and "high" in err
    assert bench_jobs_in(config) == []


@pytest.mark.parametrize("argv, wanted", [
    (["--jobs", "0"], "--jobs: must be a number of jobs"),
    (["--jobs", "ten"], "--jobs: must be a number of jobs"),
    (["--jobs", "-5"], "--jobs"),
    (["--probes", "0"], "--probes: must be a number of pickup probes"),
    (["--queue", "a b"], "--queue: must be a queue name"),
    (["--queue", "nobody"], "queue 'nobody' is served by no pool of"),
])
def test_bench_refuses_a_bad_command_line(tmp_path, argv, wanted):
    config = write_config(tmp_path)
    code, out, err = jobrt("bench", "--config", config, *argv)
    assert code == 2, err
    assert wanted in err and len(err.splitlines()) == 1 and out == ""
