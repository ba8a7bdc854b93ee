"""The supervisor end to end: a real `jobrt start`, real forks, a real SQLite file."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from runtime import connect
from tests.conftest import END_STATES, alive, wait_for, write_config


def finished(queue, job_id, timeout=30.0):
    return wait_for(lambda: (r := queue.status(job_id)).state in END_STATES and r,
                    timeout, f"job {job_id} to end")


def run_lines(path):
    """(text, job id, attempt, pid) for each append_line run."""
    if not path.exists():
        return []
    return [(t, int(j), int(a), int(p)) for t, j, a, p in
            (line.split() for line in path.read_text().splitlines())]


@pytest.fixture
def queue_for():
    opened = []

    def open_queue(config):
        queue = connect(config=str(config))
        opened.append(queue)
        return queue

    yield open_queue
    for queue in opened:
        queue.close()


def test_jobs_run_and_results_are_stored(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path)
    start_supervisor(config)
    q = queue_for(config)
    echo = q.enqueue("jobs.examples:echo", 1, "two", three=3.0)
    added = q.enqueue("jobs.examples:add", 2, 3)
    assert finished(q, echo).result == {"args": [1, "two"], "kwargs": {"three": 3.0}}
    record = finished(q, added)
    assert (record.state, record.result, record.attempts, record.error) == ("succeeded", 5, 1, None)


def test_queues_are_served_in_strict_priority_order(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    log = tmp_path / "runs.log"
    q = queue_for(config)
    items = [("jobs.examples:append_line", (str(log), queue), {}, {"_queue": queue})
             for queue in ("low", "default", "high") for _ in range(5)]
    ids = q.enqueue_many(items)
    start_supervisor(config)
    for job_id in ids:
        finished(q, job_id)
    order = [text for text, *_ in run_lines(log)]
    assert order == ["high"] * 5 + ["default"] * 5 + ["low"] * 5


def test_a_busy_pool_claims_nothing_so_later_high_priority_jobs_go_first(
        tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    start_supervisor(config)
    q = queue_for(config)
    log, gate = tmp_path / "runs.log", tmp_path / "gate"
    busy = q.enqueue("jobs.examples:wait_for_file", str(gate))  # busy until the test opens the gate
    wait_for(lambda: q.status(busy).state == "running", what="the worker to be busy")
    low = q.enqueue_many([("jobs.examples:append_line", (str(log), "low"), {}, {"_queue": "low"})] * 3)
    high = q.enqueue("jobs.examples:append_line", str(log), "high", _queue="high")
    assert [q.status(job_id).state for job_id in low + [high]] == ["pending"] * 4  # none claimed
    gate.touch()
    for job_id in [busy] + low + [high]:
        assert finished(q, job_id).state == "succeeded"
    assert [text for text, *_ in run_lines(log)] == ["high", "low", "low", "low"]


@pytest.mark.parametrize("job", ["busy_loop", "c_sleep", "ignore_sigterm"])
def test_hard_timeout_kills_and_replaces_the_worker(job, tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    start_supervisor(config)
    q = queue_for(config)
    stuck = q.enqueue(f"jobs.examples:{job}", _timeout=0.5)
    record = finished(q, stuck)
    assert record.state == "failed"
    assert "timed out after 0.5 s" in record.error
    after = q.enqueue("jobs.examples:add", 1, 1)  # a fresh worker took the slot
    assert finished(q, after).result == 2


def test_timeout_kills_what_the_job_spawned(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    start_supervisor(config)
    q = queue_for(config)
    pid_file = tmp_path / "grandchild.pid"
    job_id = q.enqueue("jobs.examples:spawn_and_hang", str(pid_file), _timeout=3)  # time to write it
    assert "timed out" in finished(q, job_id).error
    grandchild = int(pid_file.read_text())
    wait_for(lambda: not alive(grandchild), 10, "the job's child to die")


@pytest.mark.parametrize("job,args,expected", [
    ("crash", [3], "exited with status 3"),
    ("crash", [0], "without reporting a result"),
    ("segfault", [], "SIGSEGV"),
])
def test_worker_death_fails_the_job_with_how_it_died(job, args, expected, tmp_path, start_supervisor,
                                                    queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    start_supervisor(config)
    q = queue_for(config)
    record = finished(q, q.enqueue(f"jobs.examples:{job}", *args))
    assert record.state == "failed"
    assert expected in record.error
    assert finished(q, q.enqueue("jobs.examples:add", 2, 2)).result == 4


def test_retries_then_success_and_failed_store(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path)
    start_supervisor(config)
    q = queue_for(config)
    flaky = finished(q, q.enqueue("jobs.examples:flaky", 3))
    assert (flaky.state, flaky.attempts, flaky.result) == ("succeeded", 3, 3)
    failing = finished(q, q.enqueue("jobs.examples:fail", "boom", _tries=2))
    assert (failing.state, failing.attempts) == ("failed", 2)
    assert "RuntimeError: boom" in failing.error
    assert "Traceback" in failing.traceback and "raise RuntimeError" in failing.traceback
    assert [r.id for r in q.storage.failed()] == [failing.id]


def test_release_puts_the_job_back(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path)
    start_supervisor(config)
    q = queue_for(config)
    record = finished(q, q.enqueue("jobs.examples:release_once", 0.2))
    assert (record.state, record.result, record.attempts) == ("succeeded", 2, 2)


def test_recycling_after_max_jobs_loses_and_repeats_nothing(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 2, "max_jobs": 5}})
    start_supervisor(config)
    q = queue_for(config)
    log = tmp_path / "runs.log"
    ids = q.enqueue_many([("jobs.examples:append_line", (str(log), "x")) for _ in range(60)])
    for job_id in ids:
        assert finished(q, job_id).state == "succeeded"
    runs = run_lines(log)
    assert sorted(job_id for _, job_id, _, _ in runs) == sorted(ids)  # each ran exactly once
    per_pid = {}
    for _, _, _, pid in runs:
        per_pid[pid] = per_pid.get(pid, 0) + 1
    assert len(per_pid) >= 60 // 5 // 2 * 2 - 2  # many workers came and went
    assert max(per_pid.values()) <= 5


def test_recycling_after_max_time(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "max_time": 0.3}})
    start_supervisor(config)
    q = queue_for(config)
    log = tmp_path / "runs.log"
    ids = q.enqueue_many([("jobs.examples:append_line", (str(log), "t"), {"pause": 0.1}) for _ in range(20)])
    for job_id in ids:
        assert finished(q, job_id).state == "succeeded"
    runs = run_lines(log)
    assert sorted(job_id for _, job_id, _, _ in runs) == sorted(ids)
    assert len({pid for *_, pid in runs}) >= 3


def test_recycling_after_memory_limit(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "max_memory_mb": 100}})
    start_supervisor(config)
    q = queue_for(config)
    log = tmp_path / "runs.log"
    finished(q, q.enqueue("jobs.examples:append_line", str(log), "before"))
    hog = finished(q, q.enqueue("jobs.examples:memory_hog", 150))
    assert hog.state == "succeeded"  # the job itself is fine; its worker is recycled after it
    finished(q, q.enqueue("jobs.examples:append_line", str(log), "after"))
    (_, _, _, before), (_, _, _, after) = run_lines(log)
    assert before != after


def test_a_job_past_memory_limit_is_killed_and_fails_clearly(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "memory_limit_mb": 150, "timeout": 600}})
    start_supervisor(config)
    q = queue_for(config)
    hog = finished(q, q.enqueue("jobs.examples:memory_hog", 400, hold=3600), timeout=60)
    assert hog.state == "failed"
    assert "over memory_limit_mb (150 MiB) (worker and its process group killed)" in hog.error
    assert finished(q, q.enqueue("jobs.examples:add", 1, 2)).result == 3


def test_sigterm_lets_running_jobs_finish_and_keeps_pending_ones(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "grace": 30}})
    supervisor = start_supervisor(config)
    q = queue_for(config)
    log = tmp_path / "runs.log"
    running = q.enqueue("jobs.examples:append_line", str(log), "started", pause=1.0)
    wait_for(lambda: run_lines(log), what="the first job to start")
    waiting = q.enqueue_many([("jobs.examples:noop", ()) for _ in range(20)])
    assert supervisor.stop() == 0  # one SIGTERM: a second one would mean "stop now"
    assert q.status(running).state == "succeeded"
    states = {q.status(job_id).state for job_id in waiting}
    assert states <= {"succeeded", "pending"}


def test_sigterm_grace_runs_out_and_the_job_goes_back(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "grace": 0.5}})
    supervisor = start_supervisor(config)
    q = queue_for(config)
    stamp = tmp_path / "started"
    job_id = q.enqueue("jobs.examples:c_sleep", 3600, str(stamp))
    wait_for(stamp.exists, what="the job to start")
    pids = [c.pid for c in psutil.Process(supervisor.proc.pid).children()]
    assert supervisor.stop() == 0
    record = q.status(job_id)
    assert (record.state, record.attempts) == ("pending", 0)
    assert "grace" in record.error
    for pid in pids:
        assert not alive(pid)


def test_workers_die_with_a_killed_supervisor_and_a_restart_rescues_at_once(
        tmp_path, start_supervisor, queue_for):
    # A lease of 300 s: only the dead-owner check can explain a prompt rescue.
    config = write_config(tmp_path, storage={"lease": 300})
    first = start_supervisor(config)
    q = queue_for(config)
    ids = q.enqueue_many([("jobs.examples:sleep", (0.05,)) for _ in range(40)])
    wait_for(lambda: q.counts()["default"]["succeeded"] >= 5, what="some jobs to finish")
    workers = [c.pid for c in psutil.Process(first.proc.pid).children()]
    assert workers
    first.kill()
    for pid in workers:
        wait_for(lambda: not alive(pid),
                 10, f"worker {pid} to die with its supervisor")
    start_supervisor(config)
    for job_id in ids:
        assert finished(q, job_id).state == "succeeded"


def test_idle_pickup_is_woken_not_polled(tmp_path, start_supervisor, queue_for):
    # With a 600 s poll, only the wake-up datagram can start the job within finished()'s 30 s.
    config = write_config(tmp_path, storage={"poll": 600})
    start_supervisor(config)
    q = queue_for(config)
    for _ in range(3):
        assert finished(q, q.enqueue("jobs.examples:add", 1, 2)).result == 3


def test_delayed_job_waits_for_its_time(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, storage={"poll": 600})
    start_supervisor(config)
    q = queue_for(config)
    job_id = q.enqueue("jobs.examples:stamp", _delay=0.5)
    record = finished(q, job_id)  # 30 s: far less than the 600 s poll
    assert record.result >= record.available_at


def test_unregistered_name_in_storage_is_failed_not_run(tmp_path, start_supervisor, queue_for):
    from runtime.storage.base import NewJob
    import time
    config = write_config(tmp_path)
    start_supervisor(config)
    q = queue_for(config)
    [forged] = q.storage.enqueue([NewJob("default", "os:system", b'[["touch pwned"],{}]', time.time())])
    q.storage.notify()
    record = finished(q, forged)
    assert record.state == "failed" and "not registered" in record.error
    assert not (tmp_path / "pwned").exists()
    assert os.path.exists(tmp_path / "jobs.db")


def test_a_second_sigterm_stops_now_and_still_returns_the_job(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "grace": 3600}})
    supervisor = start_supervisor(config)
    q = queue_for(config)
    stamp = tmp_path / "started"
    job_id = q.enqueue("jobs.examples:c_sleep", 3600, str(stamp))
    wait_for(stamp.exists, what="the job to start")
    supervisor.signal(signal.SIGTERM)
    supervisor.wait_message(b"STOPPING=1")
    supervisor.signal(signal.SIGTERM)
    assert supervisor.proc.wait(60) == 0  # far less than the 3600 s grace
    record = q.status(job_id)
    assert (record.state, record.attempts) == ("pending", 0)
    assert "told again to stop" in record.error and "grace" not in record.error  # it did not run out


def test_a_leaking_job_is_recycled_by_owned_memory_and_nothing_is_lost(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "max_memory_mb": 50}})
    start_supervisor(config)
    q = queue_for(config)
    log = tmp_path / "runs.log"
    ids = q.enqueue_many([("jobs.examples:leak", (10, str(log)))] * 20)
    for job_id in ids:
        assert finished(q, job_id).state == "succeeded"
    runs = run_lines(log)
    assert sorted(job_id for _, job_id, _, _ in runs) == sorted(ids)
    per_pid = {}
    for *_, pid in runs:
        per_pid[pid] = per_pid.get(pid, 0) + 1
    # 10 MiB a job against 50 MiB owned: recycled after about 5 jobs, never much later.
    assert len(per_pid) >= 3 and max(per_pid.values()) <= 6


def test_storage_locked_for_a_while_pauses_and_resumes_by_itself(tmp_path, start_supervisor, queue_for):
    import sqlite3

    config = write_config(tmp_path)
    q = queue_for(config)
    log = tmp_path / "runs.log"
    ids = q.enqueue_many([("jobs.examples:append_line", (str(log), "x"), {"pause": 0.01})] * 300)
    supervisor = start_supervisor(config)
    wait_for(lambda: len(run_lines(log)) >= 20, what="the run to be under way")
    blocker = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # no other writer until it ends: storage is read-only
    wait_for(lambda: "storage unavailable" in supervisor.output(), what="the supervisor to notice")
    blocker.execute("COMMIT")
    blocker.close()
    for job_id in ids:
        assert finished(q, job_id).state == "succeeded"
    assert sorted(job_id for _, job_id, _, _ in run_lines(log)) == sorted(ids)
    output = supervisor.output()
    assert "storage unavailable" in output and "database is locked" in output
    assert "storage is back" in output


def test_what_jobs_left_behind_a_killed_supervisor_is_killed_by_the_next(tmp_path, start_supervisor, queue_for):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "grace": 1}})
    first = start_supervisor(config)
    q = queue_for(config)
    pid_file = tmp_path / "child.pid"
    q.enqueue("jobs.examples:escape_and_hang", str(pid_file))
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the job to start its child")
    child = int(pid_file.read_text())
    first.kill()
    assert alive(child)  # orphaned, still running
    second = start_supervisor(config)

    wait_for(lambda: not alive(child), 30, "the orphaned child to be killed")
    assert "left running" in second.output()
    # The second one rescued the job and may run it again: stopped gracefully, it kills
    # that run and what it left (SIGKILLed at teardown, it would leave it to no one).
    assert second.stop() == 0
    rerun = int(pid_file.read_text())
    wait_for(lambda: not alive(rerun), 30, "the rerun's child to be killed with its supervisor")


def test_ended_jobs_are_pruned_after_the_retention(tmp_path, start_supervisor, queue_for):
    from runtime import JobNotFound

    config = write_config(tmp_path, storage={"retention": 0.5})
    q = queue_for(config)
    ids = q.enqueue_many([("jobs.examples:noop", ())] * 1200)  # more than one prune batch
    kept = q.enqueue("jobs.examples:noop", _delay=3600)  # pending: never pruned
    start_supervisor(config)

    def pruned(job_id):
        try:
            q.status(job_id)
        except JobNotFound:
            return True
        return False

    wait_for(lambda: all(pruned(i) for i in (ids[0], ids[600], ids[-1])), 60, "ended jobs to be pruned")
    assert q.status(kept).state == "pending"
