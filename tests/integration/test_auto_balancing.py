"""balance = "auto" with a real `jobrt start`: a backlog on one queue of three pulls workers to
it and lets them go after; a shrink never retires a worker running a job; `jobrt status` and
`jobrt workers` show each worker's queue and the pool's targets. Everything is awaited with
deadlines, never slept on, and nothing asserts how fast it happened. The backlog test runs on
SQLite and (marked postgres) on PostgreSQL; SIGHUP turns balancing on and off."""

from __future__ import annotations

import json
import signal
from collections import Counter

from runtime import connect
from tests.conftest import END_STATES, jobrt, wait_for, write_config

QUEUES = ["emails", "exports", "reports"]


def balanced_config(tmp_path, storage=None, **pool):
    return write_config(tmp_path, storage=storage, pools={"default": {
        "queues": QUEUES, "balance": "auto", "min_workers": 1, "max_workers": 6,
        "balance_cooldown": 0.2, "balance_max_shift": 1, **pool}})


def status(config) -> dict:
    code, out, err = jobrt("status", "--config", config, "--json")
    assert code == 0, err
    return json.loads(out)


def serving(q) -> Counter:
    """Workers per queue in the supervisors' latest heartbeats (stopping ones left out)."""
    return Counter(w["queue"] for row in q.storage.supervisors() for w in row.info.get("workers", [])
                   if w["state"] != "stopping")


def targets(q) -> dict:
    (row,) = q.storage.supervisors()
    return row.info["pools"]["default"]["targets"]


def test_a_backlog_on_one_queue_pulls_workers_to_it_and_releases_them_after(tmp_path, start_supervisor,
                                                                            storage):
    config = balanced_config(tmp_path, storage)
    supervisor = start_supervisor(config)
    with connect(config=str(config)) as q:
        idle = {"emails": 1, "exports": 1, "reports": 1}
        wait_for(lambda: serving(q) == Counter(idle), what="one worker a queue while idle")
        gate = tmp_path / "open"
        backlog = q.enqueue_many([("jobs.examples:wait_for_file", (str(gate),), {}, {"_queue": "exports"})] * 12)
        others = [q.enqueue("jobs.examples:add", 1, 2, _queue=queue) for queue in ("emails", "reports")]
        # the other queues keep their own worker and are served meanwhile
        wait_for(lambda: all(q.status(i).state == "succeeded" for i in others), what="emails and reports served")
        # 6 at most: 1 for emails, 1 for reports, 4 for the backlog
        wait_for(lambda: serving(q)["exports"] == 4 and targets(q)["exports"] == 4,
                 what="four workers pulled to exports")
        document = status(config)
        assert Counter(w["queue"] for w in document["workers"]) == Counter(emails=1, exports=4, reports=1)
        pools = document["supervisors"][0]["pools"]["default"]
        assert pools["balance"] == "auto" and pools["max_workers"] == 6
        assert pools["targets"] == {"emails": 1, "exports": 4, "reports": 1}
        code, out, _ = jobrt("workers", "--config", config)
        assert code == 0 and out.count("queue exports") == 4 and "workers per queue emails 1, exports 4" in out
        gate.write_text("")
        wait_for(lambda: all(q.status(i).state in END_STATES for i in backlog), 60, "the backlog to drain")
        assert {q.status(i).state for i in backlog} == {"succeeded"}
        assert {q.status(i).attempts for i in backlog} == {1}
        wait_for(lambda: serving(q) == Counter(idle) and targets(q) == idle, what="the workers let go")
    log = supervisor.output()
    assert "scaled down" in log and "workers per queue emails 1, exports 4, reports 1" in log


def test_a_shrink_never_retires_a_worker_running_a_job(tmp_path, start_supervisor):
    config = balanced_config(tmp_path)
    supervisor = start_supervisor(config)
    with connect(config=str(config)) as q:
        gate = tmp_path / "open"
        running = q.enqueue_many([("jobs.examples:wait_for_file", (str(gate),), {}, {"_queue": "exports"})] * 4)
        wait_for(lambda: sum(q.status(i).state == "running" for i in running) == 4
                 and serving(q)["exports"] == 4, what="four jobs running on four exports workers")
        busy = {w["pid"] for row in q.storage.supervisors() for w in row.info["workers"] if w["state"] == "busy"}
        assert len(busy) == 4
        for limit in (5, 4, 3):  # one signal at a time: the kernel merges a pending one
            supervisor.signal(signal.SIGTTOU)
            wait_for(lambda: q.storage.supervisors()[0].info["pools"]["default"]["max_workers"] == limit,
                     what=f"max_workers {limit} after SIGTTOU")
        wait_for(lambda: targets(q) == {"emails": 1, "exports": 1, "reports": 1},
                 what="targets cut to max_workers at once")
        # the busy workers went on with their jobs: parked (no queue), none stopped or killed
        workers = {w["pid"]: w for row in q.storage.supervisors() for w in row.info["workers"]}
        assert busy <= set(workers) and {workers[pid]["state"] for pid in busy} == {"busy"}
        gate.write_text("")
        wait_for(lambda: all(q.status(i).state in END_STATES for i in running), 60, "the jobs to end")
        assert [(q.status(i).state, q.status(i).attempts) for i in running] == [("succeeded", 1)] * 4
        wait_for(lambda: serving(q) == Counter(emails=1, exports=1, reports=1), what="three workers after")
    log = supervisor.output()
    assert "killed" not in log and "interrupted" not in log
    assert "SIGTTOU: pool default: max_workers 3" in log


def test_sighup_turns_balancing_on_and_off(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"queues": QUEUES, "workers": 2}})
    supervisor = start_supervisor(config)
    with connect(config=str(config)) as q:
        wait_for(lambda: serving(q) == Counter({None: 2}), what="two workers serving every queue")
        config.write_text(balanced_config(tmp_path).read_text())
        supervisor.signal(signal.SIGHUP)
        wait_for(lambda: serving(q) == Counter(emails=1, exports=1, reports=1), what="one worker a queue")
        added = q.enqueue("jobs.examples:add", 2, 3, _queue="reports")
        wait_for(lambda: q.status(added).state == "succeeded", what="a reports job run by its worker")
        config.write_text(write_config(tmp_path, pools={"default": {"queues": QUEUES, "workers": 2}})
                          .read_text())
        supervisor.signal(signal.SIGHUP)
        wait_for(lambda: serving(q) == Counter({None: 2}), what="back to two workers for every queue")
