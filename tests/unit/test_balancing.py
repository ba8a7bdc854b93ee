"""The balancing step (runtime.workers.balancing): bounds, max_shift, shares, convergence.

Hypothesis prints a failing example with a blob to replay it (print_blob); the random walk
below prints its seed (the `seed` fixture; rerun with JOBRT_TEST_SEED)."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings, strategies as st

from runtime.workers.balancing import Limits, QueueLoad, desired, even_split, loads, step

QUEUES = ("emails", "exports", "reports", "q4", "q5")


@st.composite
def situations(draw):
    """(queues -> QueueLoad, Limits, ceiling): current targets within the limits, as a
    pool's own steps keep them."""
    n = draw(st.integers(1, len(QUEUES)))
    low = draw(st.integers(1, 4))
    high = draw(st.integers(low * n, low * n + 30))
    limits = Limits(low, high, draw(st.integers(1, 5)), draw(st.sampled_from(["time", "size"])))
    workers = [low] * n
    for _ in range(draw(st.integers(0, high - low * n))):  # spread some extra workers about
        workers[draw(st.integers(0, n - 1))] += 1
    queues = {}
    for name, current in zip(QUEUES, workers):
        queues[name] = QueueLoad(
            pending=draw(st.one_of(st.just(0), st.integers(0, 10), st.integers(0, 100_000))),
            runtime=draw(st.one_of(st.none(), st.floats(0, 120, allow_nan=False))),
            workers=current, busy=draw(st.integers(0, current)))
    ceiling = draw(st.one_of(st.none(), st.integers(0, high + 5)))
    return queues, limits, ceiling


@settings(max_examples=500, deadline=None, print_blob=True)
@given(situations())
def test_a_step_stays_within_min_max_and_max_shift(situation):
    queues, limits, ceiling = situation
    new = step(queues, limits, ceiling)
    assert set(new) == set(queues)
    before = sum(load.workers for load in queues.values())
    assert sum(new.values()) <= limits.max_workers
    if ceiling is not None:  # memory never lets it grow past the ceiling (it need not shrink to it)
        assert sum(new.values()) <= max(before, ceiling)
    for queue, load in queues.items():
        assert new[queue] >= limits.min_workers
        assert abs(new[queue] - load.workers) <= limits.max_shift, (queue, load, new)


@settings(max_examples=500, deadline=None, print_blob=True)
@given(situations())
def test_where_it_heads_is_within_bounds_and_no_more_than_a_queue_can_use(situation):
    queues, limits, _ = situation
    goal = desired(queues, limits)
    assert sum(goal.values()) <= limits.max_workers
    for queue, load in queues.items():
        assert limits.min_workers <= goal[queue] <= max(limits.min_workers, load.pending + load.busy)
    if all(load.pending == 0 and load.busy == 0 for load in queues.values()):
        assert set(goal.values()) == {limits.min_workers}  # an idle pool shrinks to the minimum


@settings(max_examples=300, deadline=None, print_blob=True)
@given(situations())
def test_steps_converge_to_where_it_heads_and_never_move_away(situation):
    queues, limits, _ = situation
    goal = desired(queues, limits)
    distance = sum(abs(goal[q] - load.workers) for q, load in queues.items())
    for _ in range(math.ceil(limits.max_workers / limits.max_shift) + 1):
        new = step(queues, limits)
        now = sum(abs(goal[q] - new[q]) for q in queues)
        assert now <= distance
        distance = now
        queues = {q: load._replace(workers=new[q]) for q, load in queues.items()}
    assert {q: load.workers for q, load in queues.items()} == goal


@settings(max_examples=300, deadline=None, print_blob=True)
@given(situations())
def test_uncapped_queues_get_their_share_of_the_load_within_one_worker(situation):
    queues, limits, _ = situation
    goal = desired(queues, limits)
    weight = loads(queues, limits.strategy)
    room = {q: max(0, load.pending + load.busy - limits.min_workers) for q, load in queues.items()}
    uncapped = [q for q in queues if weight[q] > 0 and goal[q] - limits.min_workers < room[q]]
    if len(uncapped) < 2:
        return
    # between two queues neither of which got all it could use, workers follow load
    extra = {q: goal[q] - limits.min_workers for q in uncapped}
    total_extra, total_weight = sum(extra.values()), sum(weight[q] for q in uncapped)
    for q in uncapped:
        assert abs(extra[q] - total_extra * weight[q] / total_weight) < 1 + 1e-9, (q, extra, weight)


def test_a_backlog_on_one_queue_pulls_workers_to_it_and_they_return_after():
    limits = Limits(min_workers=1, max_workers=10, max_shift=1, strategy="time")
    targets = {"emails": 1, "exports": 1, "reports": 1}
    backlog = {"emails": 0, "exports": 900, "reports": 0}
    history = []
    for _ in range(12):
        targets = step({q: QueueLoad(backlog[q], 0.005, targets[q]) for q in targets}, limits)
        history.append(targets["exports"])
    assert targets == {"emails": 1, "exports": 8, "reports": 1}
    assert history[:3] == [2, 3, 4]  # one more a step: the first within one cooldown
    for _ in range(12):  # drained: back to min_workers a queue
        targets = step({q: QueueLoad(0, 0.005, targets[q]) for q in targets}, limits)
    assert targets == {"emails": 1, "exports": 1, "reports": 1}


def test_time_weighs_slow_jobs_and_size_counts_jobs():
    queues = {"fast": QueueLoad(100, 0.001, 1), "slow": QueueLoad(100, 0.1, 1)}
    by_time = desired(queues, Limits(1, 12, 1, "time"))
    by_size = desired(queues, Limits(1, 12, 1, "size"))
    assert by_time["slow"] > by_time["fast"] and by_size == {"fast": 6, "slow": 6}
    # a queue never run here is weighed at the others' average run time
    fresh = desired({"old": QueueLoad(10, 0.2, 1), "new": QueueLoad(10, None, 1)}, Limits(1, 12, 1))
    assert fresh == {"old": 6, "new": 6}


def test_running_jobs_keep_their_workers_while_nothing_is_due():
    goal = desired({"a": QueueLoad(0, 1.0, 5, busy=4), "b": QueueLoad(0, None, 1)}, Limits(1, 10))
    assert goal == {"a": 4, "b": 1}


def test_memory_holds_growth_but_does_not_shrink_the_pool():
    queues = {"a": QueueLoad(1000, 0.01, 3), "b": QueueLoad(0, None, 1)}
    assert step(queues, Limits(1, 10, 5), ceiling=5) == {"a": 4, "b": 1}
    assert step(queues, Limits(1, 10, 5), ceiling=2) == {"a": 3, "b": 1}


def test_a_lowered_max_workers_is_obeyed_at_once():
    queues = {"a": QueueLoad(1000, 0.01, 6), "b": QueueLoad(1000, 0.01, 4)}
    new = step(queues, Limits(1, 7, 1))
    assert sum(new.values()) == 7 and min(new.values()) >= 1


def test_simple_splits_max_workers_evenly_higher_priority_first():
    assert even_split(["a", "b", "c"], 1, 10) == {"a": 4, "b": 3, "c": 3}
    assert even_split(["a", "b"], 2, 4) == {"a": 2, "b": 2}


def test_a_random_walk_of_loads_keeps_every_bound(seed):
    rng = random.Random(seed)
    limits = Limits(min_workers=2, max_workers=16, max_shift=2, strategy="time")
    targets = dict.fromkeys(QUEUES[:4], 2)
    for turn in range(2000):
        queues = {q: QueueLoad(rng.choice([0, 0, rng.randrange(50), rng.randrange(5000)]),
                               rng.choice([None, rng.uniform(0, 2)]), targets[q],
                               rng.randrange(targets[q] + 1)) for q in targets}
        new = step(queues, limits, rng.choice([None, rng.randrange(20)]))
        assert sum(new.values()) <= limits.max_workers, f"seed {seed}, turn {turn}"
        assert all(abs(new[q] - targets[q]) <= 2 and new[q] >= 2 for q in targets), f"seed {seed}"
        targets = new
