"""BalancedPool's bookkeeping without forking: workers are records over a pipe that nobody
reads, so what the pool sends them (RUN and STOP frames) stays visible in the pipe. Claims
are per queue, a job goes only to a worker of its queue, a shrink retires idle workers and
parks busy ones, and free memory holds growth with one log line."""

from __future__ import annotations

import logging
import os
import types

import pytest

from runtime.config.load import config_from_dict
from runtime.storage.base import ClaimedJob
from runtime.workers import balanced_pool
from runtime.workers.balanced_pool import BalancedPool, worker_pool
from runtime.workers.pool import WorkerPool
from runtime.workers.records import Worker
from runtime.workers.stats import Stats

QUEUES = ["emails", "exports", "reports"]


class FakeLoop:
    relay = None

    def watch(self, worker, pool):
        pass

    def unwatch(self, worker):
        pass

    def want_write(self, worker, on, pool=None):
        pass


def make_pool(**settings) -> BalancedPool:
    config = config_from_dict({"pools": {"default": {
        "queues": QUEUES, "balance": "auto", "min_workers": 1, "max_workers": 6, "run_as_root": True,
        "max_jobs": 0, "max_time": 0, **settings}}}).pools["default"]
    pool = worker_pool(config, {}, FakeLoop(), Stats())
    assert isinstance(pool, BalancedPool)
    pool.fds = []
    pids = iter(range(1000, 2000))

    def spawn_worker(now):
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        pool.fds += [read_fd, write_fd]
        child = types.SimpleNamespace(pid=next(pids), to_child=write_fd, from_child=-1,
                                      kill=lambda: None)
        worker = Worker(child, 0, float("inf"))
        pool.workers[child.pid] = worker
        return worker

    pool.spawn_worker = spawn_worker
    return pool


@pytest.fixture
def pool():
    pool = make_pool()
    yield pool
    for fd in pool.fds:
        os.close(fd)


def job(n: int, queue: str) -> ClaimedJob:
    return ClaimedJob(n, queue, "jobs.examples:noop", b"[[],{}]", 1, None)


def by_queue(pool) -> dict:
    found = {}
    for worker in pool.workers.values():
        if worker.active:
            found[worker.queue] = found.get(worker.queue, 0) + 1
    return found


def test_off_is_the_plain_pool():
    config = config_from_dict({"pools": {"default": {"run_as_root": True}}}).pools["default"]
    assert type(worker_pool(config, {}, FakeLoop(), Stats())) is WorkerPool


def test_claims_are_per_queue_and_a_job_goes_only_to_a_worker_of_its_queue(pool):
    pool.manage(0.0)
    assert by_queue(pool) == {"emails": 1, "exports": 1, "reports": 1}
    assert pool.wanted(0) == 3
    assert sorted(pool.claims()) == [(("emails",), 1), (("exports",), 1), (("reports",), 1)]
    pool.give([job(1, "exports"), job(2, "exports"), job(3, "emails")])
    pool.dispatch(0.0)
    for worker in pool.workers.values():
        assert all(run.job.queue == worker.queue for run in worker.runs)
    assert [run.job.id for run in pool.buffer] == [2]  # waits for the exports worker
    pool.no_more(None, ["reports"])
    assert pool.wanted(0) == 0  # exports' buffer already fills its slot; reports has none
    pool.wake()
    assert pool.claims() == [] and pool.wanted(0) == 1 and pool.claims() == [(("reports",), 1)]


def test_a_shrink_retires_idle_workers_and_parks_busy_ones(pool):
    pool.rebalance(0.0, {"exports": {"pending": 100}})
    for step in range(1, 4):
        pool.rebalance(step, {"exports": {"pending": 100}})
    pool.manage(10.0)
    assert by_queue(pool) == {"emails": 1, "exports": 4, "reports": 1}
    exports = [w for w in pool.workers.values() if w.queue == "exports"]
    pool.give([job(n, "exports") for n in range(1, 3)])
    pool.dispatch(10.0)
    busy = {w.pid for w in exports if w.runs}
    assert len(busy) == 2
    pool.rebalance(20.0, {})  # nothing due any more: one worker fewer a step
    pool.rebalance(40.0, {})
    pool.rebalance(60.0, {})
    assert pool.targets == {"emails": 1, "exports": 2, "reports": 1}  # the two running jobs keep theirs
    pool.max_workers = 3
    pool.rebalance(80.0, {})
    assert pool.targets == {"emails": 1, "exports": 1, "reports": 1}
    pool.manage(80.0)
    for worker in exports:
        if worker.pid in busy:
            assert worker.active and worker.runs  # never retired while it runs a job
        else:
            assert worker.retiring == "scaled down"
    assert sum(1 for w in exports if w.pid in busy and w.queue is None) == 1  # parked
    assert by_queue(pool)["exports"] == 1


def test_a_backlog_moves_an_idle_worker_before_spawning(pool):
    pool.manage(0.0)
    pool.targets = {"emails": 2, "exports": 1, "reports": 1}
    pool.target = 4
    pool.manage(0.0)
    assert by_queue(pool) == {"emails": 2, "exports": 1, "reports": 1}
    before = set(pool.workers)
    pool.targets = {"emails": 1, "exports": 2, "reports": 1}
    pool.manage(0.0)
    assert set(pool.workers) == before  # moved, not spawned and retired
    assert by_queue(pool) == {"emails": 1, "exports": 2, "reports": 1}


def test_free_memory_holds_growth_and_says_so_once(pool, monkeypatch, caplog):
    pool.manage(0.0)
    monkeypatch.setattr(balanced_pool, "owned_bytes", lambda pid, bound: 100 << 20)
    free = {"memory": (1 << 30) + (450 << 20)}  # less 100 MiB a live worker

    def virtual_memory():
        return types.SimpleNamespace(total=10 << 30, available=free["memory"] - len(pool.workers) * (100 << 20))

    monkeypatch.setattr(balanced_pool.psutil, "virtual_memory", virtual_memory)
    with caplog.at_level(logging.INFO, logger="jobrt"):
        for step in range(6):
            pool.rebalance(float(step), {"exports": {"pending": 1000}})
            pool.manage(float(step))
    # with 3 workers, past the 1 GiB reserve (10%) 150 MiB are free: one more worker of 100 MiB
    assert pool.target == 4 and by_queue(pool) == {"emails": 1, "exports": 2, "reports": 1}
    held = [r for r in caplog.records if "free memory allows" in r.getMessage()]
    assert len(held) == 1 and "4 workers" in held[0].getMessage()
    free["memory"] = 8 << 30
    with caplog.at_level(logging.INFO, logger="jobrt"):
        pool.rebalance(10.0, {"exports": {"pending": 1000}})
    assert pool.target == 5 and "free memory allows growing again" in caplog.text


def test_sigttin_moves_max_workers_and_simple_splits_it(pool):
    assert pool.resize(+1) == "pool default: max_workers 7" and pool.next_step == 0.0
    for _ in range(10):
        pool.resize(-1)
    assert pool.max_workers == 3  # min_workers a queue
    simple = make_pool(balance="simple", max_workers=7)
    assert simple.targets == {"emails": 3, "exports": 2, "reports": 2}
    simple.resize(+1)
    assert simple.targets == {"emails": 3, "exports": 3, "reports": 2} and simple.target == 8
    assert simple.describe()["targets"] == simple.targets
