"""The everyday operations verbs end to end, typed as a user types them against running
`jobrt start` supervisors: pause/resume (a paused queue's job stays pending while another
queue's runs, then runs once resumed), restart (every supervisor's workers are replaced),
failed prune (only old failed jobs go), jobs (pages by id, filters by tag). Pause and
restart run with two supervisors, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time

import orjson

from runtime.storage import NewJob, Outcome, open_storage
from tests.conftest import jobrt, wait_for, write_config


def cli(*args) -> str:
    code, out, err = jobrt(*args)
    assert code == 0 and "Traceback" not in err, (args, code, out, err)
    return out


def state(config, job_id: int) -> str:
    return json.loads(cli("job", "--config", config, job_id, "--json"))["state"]


def enqueue(config, *args) -> int:
    return int(cli("enqueue", "--config", config, *args).strip())


def worker_pids(config) -> set[int]:
    return {worker["pid"] for worker in json.loads(cli("workers", "--config", config, "--json"))
            if worker.get("state") != "standby"}


def test_pause_holds_a_queue_on_every_supervisor_until_resumed(tmp_path, storage, start_supervisor):
    config = write_config(tmp_path, storage=storage)
    start_supervisor(config)
    start_supervisor(config)
    out = cli("pause", "--config", config, "--queue", "low")
    assert "paused queue low" in out and "2 live supervisors" in out, out
    assert json.loads(cli("status", "--config", config, "--json"))["paused_queues"] == ["low"]
    held = enqueue(config, "jobs.examples:echo", "--queue", "low", "--args", '["held"]')
    ran = enqueue(config, "jobs.examples:echo", "--queue", "default", "--args", '["ran"]')
    # The held job was enqueued first and its wake-up came first: had the supervisors not
    # left `low` out of their claims, it would have run no later than the other one.
    wait_for(lambda: state(config, ran) == "succeeded", what="the default queue's job to run")
    assert state(config, held) == "pending"
    status = cli("status", "--config", config)
    assert "low" in status and "(paused)" in status, status
    code, out, _ = jobrt("health", "--config", config)
    assert "note: paused queues (no new job starts): low" in out, out
    out = cli("resume", "--config", config, "--queue", "low")
    assert "resumed queue low" in out and "paused queues: none" in out, out
    wait_for(lambda: state(config, held) == "succeeded", what="the resumed queue's job to run")
    assert json.loads(cli("status", "--config", config, "--json"))["paused_queues"] == []


def test_restart_replaces_the_workers_of_every_supervisor(tmp_path, storage, start_supervisor):
    config = write_config(tmp_path, storage=storage)
    first, second = start_supervisor(config), start_supervisor(config)
    before = wait_for(lambda: (lambda pids: len(pids) == 4 and pids)(worker_pids(config)),
                      what="4 live workers")
    out = cli("restart", "--config", config)
    assert "restart requested: 2 live supervisors replace their workers" in out, out
    wait_for(lambda: (lambda pids: len(pids) == 4 and not pids & before)(worker_pids(config)),
             what="every worker replaced")
    for supervisor in (first, second):
        assert "jobrt restart: reloading the configuration and job modules" in supervisor.output()
    job_id = enqueue(config, "jobs.examples:echo", "--args", '["after"]')
    wait_for(lambda: state(config, job_id) == "succeeded", what="a job run by the new workers")
    assert json.loads(cli("restart", "--config", config, "--json")) == {"restart": 2,
                                                                         "live_supervisors": 2}


def test_failed_prune_removes_only_old_failed_jobs(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    start_supervisor(config)
    recent = enqueue(config, "jobs.examples:fail")
    wait_for(lambda: state(config, recent) == "failed", what="a job to fail")
    storage = open_storage("sqlite:///jobs.db", role="client", base_dir=str(tmp_path))
    try:  # two jobs that failed three days ago (no CLI verb dates a failure)
        old = storage.enqueue([NewJob("doomed", "jobs.examples:echo", orjson.dumps([[], {}]), 0.0)] * 2)
        at = time.time() - 3 * 86400
        claimed = storage.claim("test", ["doomed"], 2, at + 60, at)
        storage.settle("test", [Outcome(c.id, c.attempt, "failed", at, error="x") for c in claimed])
    finally:
        storage.close()
    assert cli("failed", "prune", "--config", config, "--older-than", "4d").startswith("pruned 0 ")
    out = cli("failed", "prune", "--config", config, "--older-than", "2d")
    assert out.strip() == "pruned 2 failed jobs that failed more than 2d ago", out
    assert [job["id"] for job in json.loads(cli("failed", "list", "--config", config, "--json"))] == [recent]
    assert all(jobrt("job", "--config", config, i)[0] == 1 for i in old)
    assert json.loads(cli("failed", "prune", "--config", config, "--hours", "1", "--json"))["prune"] == 0
    code, _, err = jobrt("failed", "prune", "--config", config)
    assert code == 2 and "--older-than" in err and len(err.strip().splitlines()) == 1


def test_jobs_lists_newest_first_a_page_at_a_time_and_by_tag(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    start_supervisor(config)
    tagged = [enqueue(config, "jobs.examples:echo", "--args", f'["{i}"]', "--tag", "report",
                      "--tag", f"user:{i}") for i in range(5)]
    plain = enqueue(config, "jobs.examples:echo")
    wait_for(lambda: state(config, plain) == "succeeded", what="the jobs to run")
    seen, cursor = [], None
    while True:
        page = json.loads(cli("jobs", "--config", config, "--tag", "report", "--limit", "2", "--json",
                              *(("--after", cursor) if cursor else ())))
        assert len(page["jobs"]) <= 2
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == tagged[::-1]
    page = json.loads(cli("jobs", "--config", config, "--json"))
    assert [job["id"] for job in page["jobs"]] == [plain, *tagged[::-1]]
    assert page["jobs"][1]["tags"] == ["report", "user:4"] and page["jobs"][0]["tags"] == []
    assert [job["id"] for job in json.loads(cli("jobs", "--config", config, "--tag", "user:2",
                                                "--json"))["jobs"]] == [tagged[2]]
    out = cli("jobs", "--config", config, "--tag", "report", "--limit", "3")
    assert out.splitlines()[1].split()[0] == str(tagged[4]) and f"--after {tagged[2]}" in out, out
    assert "tags: [\"report\",\"user:0\"]" in cli("job", "--config", config, tagged[0])
    code, _, err = jobrt("jobs", "--config", config, "--state", "done")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_pause_with_no_supervisor_running_says_so(tmp_path):
    config = write_config(tmp_path)
    enqueue(config, "jobs.examples:echo")  # the database exists: supervisors are what is missing
    out = cli("pause", "--config", config, "--queue", "low")
    assert "no supervisor is live; those started later see it at once" in out, out
    assert "0 live" not in out
