"""Several supervisors on one PostgreSQL database, connection loss, end to end."""

from __future__ import annotations

import collections

import psycopg
import pytest

from runtime import StorageError, connect
from tests.conftest import wait_for, write_config

pytestmark = pytest.mark.postgres


def runs_per_job(log):
    counts = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            counts[int(line.split()[1])] += 1
    return counts


def all_done(q, ids, timeout=120):
    def check():
        try:
            counts = q.counts().get("default", {})
        except StorageError:  # the test itself cut the connection; the next call reconnects
            return False
        return counts.get("succeeded", 0) == len(ids) and counts
    return wait_for(check, timeout, f"{len(ids)} jobs to succeed")


def test_three_supervisors_run_every_job_exactly_once(tmp_path, pg_url, start_supervisor):
    config = write_config(tmp_path, storage={"url": pg_url})
    log = tmp_path / "runs.log"
    with connect(config=str(config)) as q:
        ids = q.enqueue_many([("jobs.examples:append_line", (str(log), "x"))] * 5000)
        for _ in range(3):
            start_supervisor(config)
        all_done(q, ids)
    counts = runs_per_job(log)
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}


def test_a_killed_supervisors_jobs_are_rescued_when_its_lease_runs_out(tmp_path, pg_url, start_supervisor):
    config = write_config(tmp_path, storage={"url": pg_url, "lease": 2})
    log = tmp_path / "runs.log"
    with connect(config=str(config)) as q:
        ids = q.enqueue_many([("jobs.examples:append_line", (str(log), "x"), {"pause": 0.02})] * 600)
        # Another "host": the survivors cannot see that its pid died, only that its lease expired.
        victim = start_supervisor(config, env={"JOBRT_HOST": "elsewhere"})
        survivors = [start_supervisor(config) for _ in range(2)]
        wait_for(lambda: len(runs_per_job(log)) >= 50, what="the run to be under way")
        victim.kill()
        all_done(q, ids)
        rescued = [r for r in (q.status(i) for i in ids) if r.attempts > 1]
    counts = runs_per_job(log)
    assert sorted(counts) == sorted(ids)  # nothing lost
    assert rescued and all("lease expired" in (r.error or "") or r.attempts > 1 for r in rescued)
    assert sum(n - 1 for n in counts.values()) <= len(rescued)  # only rescued jobs ran twice
    assert all(s.proc.poll() is None for s in survivors)


def _terminate_backends(url):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]


def test_connection_loss_keeps_workers_and_loses_nothing(tmp_path, pg_url, pg_cluster, start_supervisor):
    config = write_config(tmp_path, storage={"url": pg_url, "poll": 0.2})
    log = tmp_path / "runs.log"
    with connect(config=str(config)) as q:
        supervisor = start_supervisor(config)
        ids = q.enqueue_many([("jobs.examples:append_line", (str(log), "x"), {"pause": 0.005})] * 1500)
        wait_for(lambda: len(runs_per_job(log)) >= 100, what="the run to be under way")
        assert _terminate_backends(pg_url) >= 1
        wait_for(lambda: len(runs_per_job(log)) >= 600, what="the run to go on after the drop")
        pg_cluster.restart()
        all_done(q, ids)
        more = q.enqueue("jobs.examples:add", 1, 2)  # pickup still works after both outages
        wait_for(lambda: q.status(more).state == "succeeded", what="a job enqueued after the outages")
        # the client reconnected by itself too
    counts = runs_per_job(log)
    assert sorted(counts) == sorted(ids)
    output = supervisor.output()
    assert "storage unavailable" in output and "storage is back" in output
    assert supervisor.proc.poll() is None


def test_a_dropped_listen_connection_falls_back_to_polling_and_comes_back(tmp_path, pg_url, start_supervisor):
    config = write_config(tmp_path, storage={"url": pg_url, "poll": 0.3})
    with connect(config=str(config)) as q:
        supervisor = start_supervisor(config)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND query ILIKE 'LISTEN%'").fetchone()[0]
        assert killed == 1
        job_id = q.enqueue("jobs.examples:add", 2, 3)
        wait_for(lambda: q.status(job_id).state == "succeeded", what="pickup by polling")
        wait_for(lambda: "listening for new jobs again" in supervisor.output(), what="a new listener")
    assert "lost the wake-up listener" in supervisor.output()
