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


@pytest.mark.parametrize("name,args,expected", [
    ("release_forever", ("nan",), "finite number of seconds"),
    ("release_forever", ("inf",), "finite number of seconds"),
    ("release_raw", ("nan",), "finite number of seconds"),  # NaN would cross JSON as null
    ("release_raw", ("inf",), "finite number of seconds"),
    ("release_raw", (None,), "finite number of seconds"),
    ("release_raw", (-1,), "finite number of seconds"),
    ("release_raw", ("1e309",), "finite number of seconds"),
    ("release_raw", ("soon",), "finite number of seconds"),
])
def test_a_bad_release_delay_fails_the_job_not_the_supervisor(pool, name, args, expected):
    supervisor, queue, _ = pool
    job_id = queue.enqueue_many([(f"jobs.examples:{name}", args, {}, {"_tries": 3})])[0]
    record = wait_for(lambda: (r := queue.status(job_id)).state in END_STATES and r, 60, name)
    assert (record.state, record.attempts) == ("failed", 3)
    assert expected in record.error
    assert supervisor.proc.poll() is None and "supervisor failed" not in supervisor.output()


def test_release_uses_up_tries(pool):
    _, queue, _ = pool
    record = run(queue, "release_forever", 0, _tries=2)
    assert (record.state, record.attempts) == ("failed", 2)
    assert "released itself on its last try (attempt 2 of 2)" in record.error
    assert run(queue, "release_once", 0, _tries=2).state == "succeeded"


@pytest.mark.parametrize("name", ["raise_text", "fail_text"])
def test_a_lone_surrogate_in_the_error_is_kept_escaped(pool, name):
    _, queue, _ = pool
    record = run(queue, name, "bad file name: ", surrogate=True)
    assert record.state == "failed"
    assert "bad file name: \\ud" in record.error
    assert "exited with status" not in record.error


def test_a_huge_error_message_is_cut_to_a_bounded_size(pool):
    _, queue, _ = pool
    record = run(queue, "raise_text", "x", 20 << 20)
    assert record.state == "failed" and "characters cut" in record.error
    assert len(record.error) < 10_000 and len(record.traceback) < 100_000
    assert record.traceback.rstrip().endswith("x" * 100)  # its end is kept



def test_a_daemon_a_running_job_abandons_is_killed_and_reported_once(tmp_path, start_supervisor):
    """While its worker still runs, an orphan the job left is killed at a heartbeat sweep,
    and the sweeps after it, which reap its remains, do not report it again."""
    supervisor = start_supervisor(write_config(tmp_path, pools={"default": {"workers": 1, "timeout": 120}}))
    pid_file, release = tmp_path / "daemon.pid", tmp_path / "daemon.release"
    with connect(config=str(tmp_path / "supervisor.toml")) as queue:
        job_id = queue.enqueue("jobs.examples:daemonize", str(pid_file), str(release))
        daemon = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the daemon's pid"))
        wait_for(lambda: not alive(daemon), 30, "the abandoned daemon to be killed")
        assert queue.status(job_id).state == "running"
        for _ in range(3):  # three more heartbeats, each a sweep for strays
            supervisor.wait_message(b"STATUS=")
        release.touch()
        assert wait_for(lambda: (r := queue.status(job_id)).state in END_STATES and r).state == "succeeded"
    reports = [line for line in supervisor.output().splitlines() if "abandoned" in line and str(daemon) in line]
    assert len(reports) == 1, reports
