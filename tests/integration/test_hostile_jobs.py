"""Hostile jobs: each ends with a clear recorded error, and the pool stays healthy."""

from __future__ import annotations

import pytest

from runtime import connect
from tests.conftest import END_STATES, alive, wait_for, write_config


@pytest.fixture(scope="module")
def pool(tmp_path_factory, request):
    from tests.conftest import RunningSupervisor

    directory = tmp_path_factory.mktemp("hostile")
    config = write_config(directory, pools={"default": {"workers": 2, "timeout": 1}})
    supervisor = RunningSupervisor(config)
    try:
        supervisor.wait_message(b"READY=1")
        queue = connect(config=str(config))
        yield supervisor, queue, directory
        queue.close()
    finally:
        supervisor.stop()


def run(queue, name, *args, **kwargs):
    job_id = queue.enqueue(f"jobs.examples:{name}", *args, **kwargs)
    record = wait_for(lambda: (r := queue.status(job_id)).state in END_STATES and r, 60, f"{name} to end")
    healthy = queue.enqueue("jobs.examples:add", 20, 22)
    assert wait_for(lambda: (r := queue.status(healthy)).state in END_STATES and r, 60).result == 42
    return record


@pytest.mark.parametrize("name,expected", [
    ("busy_loop", "timed out after 1 s"),
    ("c_sleep", "timed out after 1 s"),
    ("block_signals", "timed out after 1 s"),
    ("ignore_sigterm", "timed out after 1 s"),
    ("sys_exit", "the job called sys.exit(2)"),
    ("keyboard_interrupt", "KeyboardInterrupt"),
    ("unprintable_error", "_Unprintable: <str() of the exception raised ValueError>"),
    ("non_json_result", "cannot be stored as JSON"),
    ("huge_result", "over the 1048576 byte limit"),
    ("close_fds", "did the job close or write to the worker's pipes?"),
    ("scribble_fds", "garbage"),
])
def test_hostile_job_fails_clearly(pool, name, expected):
    _, queue, _ = pool
    record = run(queue, name)
    assert record.state == "failed"
    assert expected in record.error


def test_segfault_every_attempt_exhausts_tries_and_spares_others(pool):
    _, queue, _ = pool
    others = queue.enqueue_many([("jobs.examples:add", (i, i)) for i in range(20)])
    record = run(queue, "segfault", _tries=3)
    assert (record.state, record.attempts) == ("failed", 3)
    assert "SIGSEGV" in record.error
    assert [queue.status(i).result for i in others] == [2 * i for i in range(20)]


def test_os_exit_zero_is_a_lost_worker_not_a_success(pool):
    _, queue, _ = pool
    record = run(queue, "crash", 0)
    assert record.state == "failed" and "without reporting a result" in record.error


def test_megabytes_of_output_do_not_deadlock(pool):
    supervisor, queue, _ = pool
    record = run(queue, "shout", 8)
    assert (record.state, record.result) == ("succeeded", 8)


def test_escaped_grandchild_is_killed_after_its_worker_dies(pool):
    _, queue, directory = pool
    pid_file = directory / "escaped.pid"
    record = run(queue, "escape_and_hang", str(pid_file))
    assert "timed out" in record.error
    escaped = int(pid_file.read_text())

    wait_for(lambda: not alive(escaped), 30, "the escaped process to be killed")


def test_job_output_is_relayed_labelled_with_its_job(pool):
    supervisor, queue, _ = pool
    record = run(queue, "say", "labelled words")
    label = f"job {record.id} (jobs.examples:say) | "
    wait_for(lambda: label + "labelled words (stderr)" in supervisor.output(), what="the relayed output")
    assert label + "labelled words (stdout)" in supervisor.output()
