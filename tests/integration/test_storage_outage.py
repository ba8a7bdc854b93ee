"""A frozen PostgreSQL (every server process SIGSTOPped: the kernel still acknowledges, so
only the supervisor's own deadlines help), a frozen supervisor, a supervisor whose wall
clock is an hour off. Each test freezes only its own throwaway cluster."""

from __future__ import annotations

import collections
import contextlib
import glob
import os
import re
import signal
import urllib.request

import psutil
import pytest

from runtime import connect
from tests.conftest import wait_for, write_config

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster of this module's own: freezing the session's would stall other tests."""
    from tests.pgcluster import Cluster

    cluster = Cluster()
    yield cluster
    try:
        thaw(cluster)
    finally:
        cluster.destroy()


def server_processes(cluster) -> list[psutil.Process]:
    postmaster = psutil.Process(cluster.postmaster_pid())
    return [postmaster, *postmaster.children(recursive=True)]


def signal_server(cluster, signum) -> None:
    """Send `signum` to every process of the server. A backend that exits between the
    listing and its signal (an autovacuum worker, which migration 16 starts more often)
    needs none."""
    for process in server_processes(cluster):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signum)


def freeze(cluster) -> None:
    signal_server(cluster, signal.SIGSTOP)


def thaw(cluster) -> None:
    signal_server(cluster, signal.SIGCONT)


@contextlib.contextmanager
def frozen(cluster):
    freeze(cluster)
    try:
        yield
    finally:
        thaw(cluster)


def runs(log) -> collections.Counter:
    """Runs started per job (append_line writes its line first)."""
    counts = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            counts[line.split()[0]] += 1
    return counts


def metrics_port(supervisor) -> int:
    found = wait_for(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                                       supervisor.output()), what="the metrics address")
    return int(found.group(1))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def test_with_storage_frozen_deadlines_metrics_and_sigterm_are_answered(tmp_path, own_cluster,
                                                                        start_supervisor):
    url = own_cluster.create_database()
    config = write_config(tmp_path, storage={"url": url, "lease": 30, "call_timeout": 0.5},
                          pools={"default": {"timeout": 2, "grace": 1, "workers": 1}},
                          metrics={"listen": "127.0.0.1:0"})
    supervisor = start_supervisor(config)
    port = metrics_port(supervisor)
    with connect(config=str(config)) as q:
        job = q.enqueue("jobs.examples:sleep", 60)
        wait_for(lambda: q.status(job).state == "running", what="the job to start")
        with frozen(own_cluster):
            wait_for(lambda: f"job {job} (jobs.examples:sleep) attempt 1 timed out after 2 s"
                     in supervisor.output(), what="the timeout to be enforced while storage is frozen")
            assert "storage unavailable" in supervisor.output()
            assert "jobrt_fenced 0.0" in scrape(port)  # served while storage is frozen
            supervisor.signal(signal.SIGTERM)
            wait_for(lambda: supervisor.proc.poll() is not None, what="SIGTERM to stop the supervisor")
            assert supervisor.proc.returncode == 0
        wait_for(lambda: q.status(job).attempts == 1)  # nothing was written while frozen


def test_a_supervisor_cut_off_past_its_lease_fences_itself_and_resumes(tmp_path, own_cluster,
                                                                       start_supervisor):
    """lease 6 s: fenced 4 s after the last renewal (fence_margin = lease / 3)."""
    url = own_cluster.create_database()
    config = write_config(tmp_path, storage={"url": url, "lease": 6, "poll": 0.2},
                          pools={"default": {"workers": 2}}, metrics={"listen": "127.0.0.1:0"})
    log = tmp_path / "runs.log"
    supervisor = start_supervisor(config)
    port = metrics_port(supervisor)
    with connect(config=str(config)) as q:
        long = q.enqueue("jobs.examples:append_line", str(log), "long", pause=8)
        short = q.enqueue_many([("jobs.examples:append_line", (str(log), f"short{n}"))
                                for n in range(5)])
        wait_for(lambda: runs(log)["long"] == 1, what="the long job to start")
        with frozen(own_cluster):
            wait_for(lambda: "fenced: leases not renewed" in supervisor.output(), 30,
                     "the supervisor to fence itself while storage is frozen")
            wait_for(lambda: re.search(r"worker \d+ killed \(fenced\)", supervisor.output()),
                     what="the long job's worker to be killed")
            metrics = scrape(port)
            assert "jobrt_fenced 1.0" in metrics and "jobrt_fence_events_total 1.0" in metrics
        wait_for(lambda: "fence lifted" in supervisor.output(), 30, "the fence to lift")
        wait_for(lambda: q.status(long).state == "succeeded", 60, "the long job to succeed by a rerun")
        assert runs(log)["long"] == 2
        assert all(q.status(i).state == "succeeded" for i in short)  # none lost
        more = q.enqueue("jobs.examples:add", 1, 2)  # working again, without a restart
        wait_for(lambda: q.status(more).state == "succeeded", what="a job enqueued afterwards")
    output = supervisor.output()
    assert output.count("fenced: leases not renewed") == 1 and output.count("fence lifted") == 1
    assert "jobrt_fenced 0.0" in scrape(port)
    assert supervisor.proc.poll() is None


def test_a_frozen_supervisors_jobs_are_rescued_and_its_late_results_refused(tmp_path, own_cluster,
                                                                            start_supervisor):
    url = own_cluster.create_database()
    config = write_config(tmp_path, storage={"url": url, "lease": 4, "poll": 0.2},
                          pools={"default": {"workers": 1}})
    log = tmp_path / "runs.log"
    cut = start_supervisor(config, env={"JOBRT_HOST": "cut"})
    with connect(config=str(config)) as q:
        job = q.enqueue("jobs.examples:append_line", str(log), "job", pause=3)
        wait_for(lambda: runs(log)["job"] == 1, what="the cut supervisor to start the job")
        other = start_supervisor(config, env={"JOBRT_HOST": "other"})
        cut.signal(signal.SIGSTOP)  # its worker goes on, and finishes its run meanwhile
        try:
            wait_for(lambda: runs(log)["job"] == 2, 30, "the other supervisor to rescue and rerun it")
        finally:
            cut.signal(signal.SIGCONT)
        wait_for(lambda: "storage refused 1 of 1 results" in cut.output(), 30,
                 "the cut supervisor's late result to be refused")
        wait_for(lambda: q.status(job).state == "succeeded", 30, "the rerun to succeed")
        record = q.status(job)
        assert record.attempts == 2 and runs(log)["job"] == 2
        assert "fenced: leases not renewed" in cut.output() and "fence lifted" in cut.output()
        assert other.stop() == 0
        more = q.enqueue("jobs.examples:add", 1, 2)  # the cut one works on, not restarted
        wait_for(lambda: q.status(more).state == "succeeded", 30, "the cut supervisor to run a job")
    assert cut.proc.poll() is None


def test_a_lock_held_for_a_moment_does_not_fence_the_supervisor(tmp_path, own_cluster,
                                                               start_supervisor):
    """lease 4 s: the heartbeat (every 1.33 s) renewing the running job's lease meets a
    table lock and gives up after lock_timeout. The server answered, so the supervisor
    neither fences at once (as if its next call could be a 2 s reconnect) nor waits a whole
    heartbeat to renew (which lands on the fence's deadline): it retries within its
    backoff, renews once the lock goes, and the job runs on undisturbed."""
    import psycopg

    url = own_cluster.create_database()
    config = write_config(tmp_path, storage={"url": url, "lease": 4, "poll": 0.2},
                          pools={"default": {"workers": 1}})
    log = tmp_path / "runs.log"
    supervisor = start_supervisor(config)
    with connect(config=str(config)) as q, psycopg.connect(url, autocommit=True) as watch:
        job = q.enqueue("jobs.examples:append_line", str(log), "job", pause=6)
        wait_for(lambda: runs(log)["job"] == 1, what="the job to start")

        def waiting() -> set:
            return set(watch.execute("SELECT pid, query_start FROM pg_stat_activity WHERE "
                                     "wait_event_type = 'Lock' AND datname = current_database()"))

        with psycopg.connect(url) as lock:
            lock.execute("LOCK TABLE jobrt_jobs IN EXCLUSIVE MODE")
            first = wait_for(waiting, 30, "the supervisor to wait for the lock")
            wait_for(lambda: not first & waiting(), 30, "its lock_timeout to cancel the wait")
            lock.rollback()
        wait_for(lambda: q.status(job).state == "succeeded", 30, "the job to succeed")
    assert runs(log)["job"] == 1
    assert "fenced" not in supervisor.output()


def libfaketime() -> str:
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        reason = "libfaketime is not installed: apt-get install faketime"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; scripts/test should have installed it")
        pytest.skip(reason)
    return found[0]


@pytest.mark.parametrize("step", ["+1h", "-1h"])
def test_a_wall_clock_an_hour_off_neither_rescues_live_jobs_nor_gets_its_own_rescued(
        tmp_path, own_cluster, start_supervisor, step):
    """+1h: the skewed supervisor sweeps for expired leases while the other runs a job.
    -1h: the skewed supervisor runs the job while the other sweeps. Leases follow the
    database's clock, so neither rescues a live job (lease 2 s: a sweep every second)."""
    skewed = {"LD_PRELOAD": libfaketime(), "FAKETIME": step, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
              "JOBRT_HOST": "skewed"}
    url = own_cluster.create_database()
    config = write_config(tmp_path, storage={"url": url, "lease": 2, "poll": 0.2},
                          pools={"default": {"workers": 1}})
    first, second = (None, skewed) if step == "+1h" else (skewed, None)
    start_supervisor(config, env=first or {"JOBRT_HOST": "plain"})
    with connect(config=str(config)) as q:
        # libc's sleep: Python's time.sleep sleeps to a monotonic deadline, which
        # libfaketime shifts by the hour and the kernel refuses
        job = q.enqueue("jobs.examples:c_sleep", 5, str(tmp_path / "started"))
        wait_for(lambda: (tmp_path / "started").exists(), what="the first supervisor to start the job")
        sweeper = start_supervisor(config, env=second or {"JOBRT_HOST": "plain"})
        wait_for(lambda: q.status(job).state == "succeeded", 30, "the job to succeed")
        assert q.status(job).attempts == 1, sweeper.output()  # never rescued, never rerun


def test_a_shorter_lease_on_reload_bounds_the_storage_calls_by_its_own_call_timeout(
        tmp_path, own_cluster, start_supervisor):
    """lease 30 s bounds each call at 5 s (lease / 6); reloaded to lease 3, calls must give up
    after 0.5 s, or one call would outlast the fence margin (1 s) that the new lease sets."""
    url = own_cluster.create_database()
    config = write_config(tmp_path, storage={"url": url, "lease": 30, "poll": 0.2})
    supervisor = start_supervisor(config)
    config.write_text(config.read_text().replace("lease = 30", "lease = 3"))
    supervisor.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in supervisor.output(), what="the reload")
    with frozen(own_cluster):
        wait_for(lambda: "did not answer within" in supervisor.output(), 30,
                 "a storage call to give up while storage is frozen")
        given_up = re.findall(r"did not answer within ([\d.]+) s", supervisor.output())
        assert set(given_up) == {"0.5"}, given_up
