"""Chaos: SIGKILL workers, supervisors and clients at random moments; nothing may be lost.

The drain scenarios run real `jobrt start` supervisors (tests/chaos/checker.py
says what is checked, and why each bound holds); benchmarks/chaos.py runs the
same scenario at full size and prints its figures.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import orjson
import pytest

from runtime import connect
from runtime.storage import NewJob, Outcome, open_storage
from tests.chaos.checker import (
    chaos_items, check, held_bound, postgres_missing, read_runs, records_of, run_chaos,
    workers_of, write_chaos_config,
)
from tests.conftest import REPO, alive, wait_for, write_config

JOBS = 15_000
PREFETCH = 2


def postgres_url(request) -> str:
    """A fresh database on the session's PostgreSQL cluster; skips while the backend cannot be used."""
    missing = postgres_missing()
    if missing:
        pytest.skip(f"the PostgreSQL backend: {missing}")
    return request.getfixturevalue("pg_url")


def drain_under_chaos(tmp_path, url, start_supervisor, supervisors, workers, seed):
    config = write_chaos_config(tmp_path, url, workers, PREFETCH)
    log = tmp_path / "runs.log"
    with connect(config=str(config)) as q:
        # Kills paced by the runs, not the clock; the timeout is only a hang guard.
        run = run_chaos(q, config, chaos_items(log, JOBS), supervisors, start=start_supervisor,
                        rng=random.Random(seed), timeout=1800, runs_log=log)
        report = check(run.ids, read_runs(log), records_of(q.storage, run.ids), run,
                       held_bound(workers, PREFETCH))
    figures = dict(report.figures(), held_at_kills=run.held_at_kills, seed=seed,
                   seconds=round(run.seconds, 1))
    print(f"chaos figures: {figures}")
    assert report.problems() == [], figures
    assert run.drained and report.jobs == JOBS, figures
    assert run.stop_codes == [0] * supervisors and run.survivors == 0, figures
    # The chaos meant something: a supervisor died holding claimed jobs (its kills come at
    # fixed shares of the runs: one holding none is as good as no kill), and workers died.
    # Each job held at a kill is claimed again, so it shows in the extra attempts.
    assert run.kills_holding >= 1 and report.worker_kills >= 1, figures
    assert report.extra_attempts >= run.held_at_kills, figures


@pytest.mark.slow
def test_killing_workers_and_the_supervisor_loses_nothing_sqlite(tmp_path, start_supervisor, seed):
    drain_under_chaos(tmp_path, "sqlite:///jobs.db", start_supervisor, supervisors=1, workers=4, seed=seed)


@pytest.mark.slow
@pytest.mark.postgres
def test_killing_workers_and_supervisors_loses_nothing_postgres(tmp_path, request, start_supervisor, seed):
    drain_under_chaos(tmp_path, postgres_url(request), start_supervisor, supervisors=2, workers=2, seed=seed)


def test_a_worker_inside_a_long_job_dies_with_its_killed_supervisor(tmp_path, start_supervisor):
    """Only PR_SET_PDEATHSIG ends this worker: an idle one would read EOF from its pipe, and
    one running a short job (as in the drains above) dies writing its result to a closed pipe."""
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    supervisor = start_supervisor(config)
    stamp = tmp_path / "started"
    with connect(config=str(config)) as q:
        q.enqueue("jobs.examples:c_sleep", 600, str(stamp))
    wait_for(stamp.exists, what="the job to start")
    [worker] = workers_of(supervisor)
    supervisor.kill()
    try:
        wait_for(lambda: not alive(worker), what="the busy worker to die with its supervisor")
    finally:
        if alive(worker):
            worker.kill()


# -- a stale run must not win ------------------------------------------------------------

@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request, tmp_path):
    if request.param == "memory":
        store = open_storage("memory://")
    elif request.param == "sqlite":
        store = open_storage("sqlite:///jobs.db", role="supervisor", base_dir=str(tmp_path))
    else:
        store = open_storage(postgres_url(request), role="supervisor")
    yield store
    store.close()


def test_a_stale_run_never_wins(storage):
    """Owner A's lease runs out while its run goes on; B claims the job again. Whatever
    A's run reports afterwards, and A's heartbeat, must leave B's claim as it is."""
    [job_id] = storage.enqueue([NewJob("default", "jobs.examples:add", orjson.dumps([[1, 2], {}]), 0.0)])
    [a] = storage.claim("A", ["default"], 1, 110.0, 100.0)
    assert storage.rescue(111.0) == 1
    [b] = storage.claim("B", ["default"], 1, 142.0, 112.0)
    assert (b.id, b.attempt) == (a.id, 2)
    claimed_by_b = storage.get(job_id)
    stale = [Outcome(a.id, a.attempt, "succeeded", 113.0, result=b'"A"'),
             Outcome(a.id, a.attempt, "failed", 113.0, error="A failed"),
             Outcome(a.id, a.attempt, "pending", 113.0, error="A retries", available_at=113.0),
             Outcome(a.id, a.attempt, "pending", 113.0, available_at=113.0, undo_attempt=True)]
    assert storage.heartbeat("A", "host-a", 1, 90.0, {}, 113.0, 200.0) == 0
    for outcome in stale:
        storage.settle("A", [outcome])
        assert storage.get(job_id) == claimed_by_b, outcome
    storage.settle("B", [Outcome(b.id, b.attempt, "succeeded", 114.0, result=b'"B"')])
    done = storage.get(job_id)
    assert (done.state, done.attempts, done.result, done.error) == ("succeeded", 2, "B", None)
    for outcome in stale:
        storage.settle("A", [outcome])
    assert storage.get(job_id) == done


# -- a client killed inside enqueue_many -------------------------------------------------

BATCH = 50_000
KILLS = 8

# Prints `writing` just before the batch's one storage transaction, `written` after it.
CLIENT = """
import sys
from runtime import connect
url, queue, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = connect(url)
write = q.storage.enqueue
def traced(jobs):
    print("writing", flush=True)
    ids = write(jobs)
    print("written", flush=True)
    return ids
q.storage.enqueue = traced
q.enqueue_many([("jobs.examples:noop", (), {}, {"_queue": queue})] * count)
"""


def start_client(url, queue):
    client = subprocess.Popen([sys.executable, "-c", CLIENT, url, queue, str(BATCH)], cwd=REPO,
                              stdout=subprocess.PIPE)
    assert client.stdout.readline() == b"writing\n", "the client died before its write"
    return client


def stored(url, queue) -> int:
    with connect(url) as q:
        return sum(q.counts().get(queue, {}).values())


def enqueue_killed_at_random(url, settled, rng):
    """Kill one client per batch at a random moment of its write, the i-th of KILLS in the
    i-th KILLS-th of the time a write took, counted from its `writing`; returns
    [(batch queue, killed inside the write, jobs stored)]. No other connection
    is open while a client is killed (settled() may wait for its server process)."""
    client = start_client(url, "calibration")
    began = time.monotonic()
    assert client.stdout.readline() == b"written\n"
    write_seconds = time.monotonic() - began
    assert client.wait() == 0 and stored(url, "calibration") == BATCH
    outcomes = []
    for trial in range(KILLS):
        queue = f"batch-{trial}"
        client = start_client(url, queue)
        time.sleep(rng.uniform(trial, trial + 1) / KILLS * write_seconds)  # the moment is the scenario
        client.kill()
        client.wait()
        inside = client.stdout.read() == b""  # it had not printed `written`
        settled()
        outcomes.append((queue, inside, stored(url, queue)))
    with connect(url) as q:
        q.enqueue("jobs.examples:noop")  # the storage is still writable
    return outcomes


def check_all_or_none(outcomes, seed):
    print(f"enqueue_many kills (batch, inside its write, jobs stored): {outcomes}")
    assert [(queue, n) for queue, _, n in outcomes if n not in (0, BATCH)] == [], (seed, outcomes)
    # The first kill comes within the first eighth of a write: it lands inside unless this
    # write was eight times as fast as the one measured.
    assert any(inside for _, inside, _ in outcomes), f"no kill landed inside a write: {outcomes}, seed={seed}"


@pytest.mark.slow
def test_a_client_killed_inside_enqueue_many_stores_all_or_none_sqlite(tmp_path, seed):
    url = f"sqlite:///{tmp_path}/jobs.db"
    check_all_or_none(enqueue_killed_at_random(url, lambda: None, random.Random(seed)), seed)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_client_killed_inside_enqueue_many_stores_all_or_none_postgres(request, seed):
    import psycopg

    url = postgres_url(request)

    def settled():
        # A COMMIT the client sent just before dying still completes on the server:
        # count only once the killed client's server process is gone.
        with psycopg.connect(url, autocommit=True) as conn:
            wait_for(lambda: conn.execute(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0],
                what="the killed client's server process to end")

    check_all_or_none(enqueue_killed_at_random(url, settled, random.Random(seed)), seed)
