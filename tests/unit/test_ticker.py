"""The supervisor's Ticker without processes: tickers over one in-memory store, on a wall
clock the test moves (seeded), as supervisors that start, stop and race."""

from __future__ import annotations

import random

import pytest

from runtime.config.load import config_from_dict
from runtime.registry import collect
from runtime.storage import open_storage
from runtime.supervisor.ticking import Ticker
from tests.conftest import REPO

T0 = 1_800_000_000.0  # a wall clock time, whole seconds


def config(**schedule):
    return config_from_dict({
        "jobs": {"modules": ["jobs.examples"], "path": [str(REPO)]},
        "pools": {"default": {"queues": ["default"]}},
        "schedules": {"beat": {"job": "jobs.examples:noop", "every": 1, **schedule}}})


@pytest.fixture(scope="module")
def registry():
    return collect(["jobs.examples"], [str(REPO)])


def rows(store) -> dict[float, dict]:
    return {at: row for (_, at), row in store.tick_rows.items()}


@pytest.mark.parametrize("mode", ["all", "latest"])
def test_two_tickers_record_each_tick_once(registry, seed, mode):
    rng = random.Random(seed)
    store = open_storage("memory://")
    tickers = [Ticker(config(catch_up=mode), registry) for _ in range(2)]
    wall = T0 + 0.5
    for ticker in tickers:
        ticker.run(store, wall, 0.0)  # the cursors: no row yet, so from now
    enqueued = 0
    while wall < T0 + 200:
        wall += rng.choice([0.001, 0.3, 0.7, 1.0, 1.6])
        for ticker in rng.sample(tickers, 2):
            enqueued += ticker.run(store, wall, 0.0)
    found = rows(store)
    ticks = sorted(found)
    every_tick = [float(t) for t in range(int(T0) + 1, int(ticks[-1]) + 1)]
    assert {row["outcome"] for row in found.values()} == {"enqueued"}
    assert enqueued == len(found) == len(store.jobs), f"seed {seed}"
    if mode == "all":
        assert ticks == every_tick, f"seed {seed}"
    else:  # a step of 1.6 s leaves a tick behind now and then: the next row stands for it
        assert len(ticks) + sum(row["missed"] for row in found.values()) == len(every_tick)


@pytest.mark.parametrize("mode", ["latest", "all", "none"])
def test_a_downtime_under_each_catch_up(registry, mode):
    store = open_storage("memory://")
    first = Ticker(config(catch_up=mode), registry)
    first.run(store, T0 + 0.5, 0.0)
    for second in range(1, 6):
        first.run(store, T0 + second + 0.01, 0.0)
    assert sorted(rows(store)) == [T0 + s for s in range(1, 6)]
    # down from T0 + 5 to T0 + 15.5: ticks 6..15 missed; 16 on time
    later = Ticker(config(catch_up=mode), registry)
    later.run(store, T0 + 15.5, 0.0)
    later.run(store, T0 + 16.01, 0.0)
    found = rows(store)
    gap = {at - T0: (row["outcome"], row["missed"]) for at, row in found.items() if at > T0 + 5}
    if mode == "latest":
        assert gap == {15: ("enqueued", 9), 16: ("enqueued", 0)}
    elif mode == "all":
        assert gap == {s: ("enqueued", 0) for s in range(6, 17)}
    else:
        # 15 came due less than STARTUP_GRACE before the start: on time
        assert gap == {14: ("missed", 9), 15: ("enqueued", 0), 16: ("enqueued", 0)}


def test_overlap_skip_with_the_previous_job_pending(registry):
    store = open_storage("memory://")
    ticker = Ticker(config(overlap="skip"), registry)
    ticker.run(store, T0 + 0.5, 0.0)
    for second in range(1, 4):
        ticker.run(store, T0 + second, 0.0)
    assert [row["outcome"] for _, row in sorted(rows(store).items())] == [
        "enqueued", "skipped", "skipped"]


def test_a_reload_keeps_the_cursor_of_a_schedule_kept(registry):
    store = open_storage("memory://")
    ticker = Ticker(config(), registry)
    for wall in (T0 + 0.5, T0 + 1.0, T0 + 2.0, T0 + 3.0):
        ticker.run(store, wall, 0.0)
    ticker.use(config(catch_up="none"), registry)
    ticker.run(store, T0 + 4.0, 0.0)
    assert sorted(rows(store)) == [T0 + s for s in range(1, 5)]


def test_a_tick_job_carries_its_time(registry):
    store = open_storage("memory://")
    ticker = Ticker(config(args=[1], queue="default", priority=3), registry)
    ticker.run(store, T0 + 0.5, 0.0)
    ticker.run(store, T0 + 1.2, 0.0)
    (job,) = store.jobs.values()
    assert job["priority"] == 3 and b'"scheduled_at":1800000001.0' in job["options"]


def test_metrics_count_the_ticks_this_supervisor_recorded(registry):
    from runtime.supervisor.metrics import Metrics

    metrics = Metrics()
    store = open_storage("memory://")
    ticker = Ticker(config(overlap="skip"), registry, metrics)
    ticker.run(store, T0 + 0.5, 0.0)
    for wall in (T0 + 1.0, T0 + 2.0, T0 + 5.0):  # 1 enqueued, 2 skipped, 3 and 4 missed, 5 skipped
        ticker.run(store, wall, 0.0)
    Ticker(config(overlap="skip"), registry, metrics).run(store, T0 + 5.2, 0.0)  # from row 5: nothing
    text = metrics.render().decode()
    for outcome, count in (("enqueued", 1), ("skipped", 2), ("missed", 2)):
        assert f'jobrt_schedule_ticks_total{{outcome="{outcome}",schedule="beat"}} {count}.0' in text
