"""How a balanced pool splits its workers between its queues: pure functions, no I/O.

    per queue: QueueLoad(pending, runtime, workers, busy) --desired(limits)--> where to head
                                                           --step(limits)----> the next targets

`even_split` is balance = "simple": max_workers split evenly, fixed. Under "auto",
`desired` gives each queue min_workers, then shares the rest of max_workers out by
load (due jobs x their average run time, or due jobs alone), never giving a queue
more workers than it has jobs to run (due + running); an idle pool heads for
min_workers a queue. `step` moves each queue's target toward that by at most
max_shift, shrinking before growing so the pool never holds more than max_workers
(nor more than `ceiling`, what free memory allows) in all.
"""

from __future__ import annotations

from typing import NamedTuple

OFF, SIMPLE, AUTO = "off", "simple", "auto"
TIME, SIZE = "time", "size"


class QueueLoad(NamedTuple):
    """What a step knows of one queue."""

    pending: int  # due jobs waiting in storage
    runtime: float | None  # average seconds a job of this queue ran here; None: none ran yet
    workers: int  # the queue's target now
    busy: int = 0  # the pool's workers running a job of this queue now


class Limits(NamedTuple):
    """A pool's balance settings."""

    min_workers: int
    max_workers: int
    max_shift: int = 1
    strategy: str = TIME


def even_split(queues, min_workers: int, max_workers: int) -> dict[str, int]:
    """balance = "simple": max_workers split evenly, the first queues (the higher priority)
    taking what does not divide; never fewer than min_workers a queue."""
    queues = list(queues)
    share, left = divmod(max_workers, len(queues))
    return {queue: max(min_workers, share + (i < left)) for i, queue in enumerate(queues)}


def loads(queues: dict[str, QueueLoad], strategy: str) -> dict[str, float]:
    """Each queue's load: due jobs ("size"), or due jobs x average run time ("time"); a queue
    whose jobs never ran here is counted at the average of those that did (at 1 s when none did,
    which is "size")."""
    if strategy == SIZE:
        return {queue: float(load.pending) for queue, load in queues.items()}
    known = [load.runtime for load in queues.values() if load.runtime is not None]
    fallback = sum(known) / len(known) if known else 1.0
    # a job that took no measurable time still counts: a queue of them is not idle
    return {queue: load.pending * max(1e-6, fallback if load.runtime is None else load.runtime)
            for queue, load in queues.items()}


def desired(queues: dict[str, QueueLoad], limits: Limits) -> dict[str, int]:
    """Where the pool heads under this load: min_workers a queue, the rest of max_workers
    shared out in proportion to load (largest remainders), a queue never given more than
    due + running jobs it has (nor less than min_workers)."""
    low = limits.min_workers
    want = {queue: low for queue in queues}
    budget = limits.max_workers - low * len(queues)
    weight = loads(queues, limits.strategy)
    room = {queue: max(0, load.pending + load.busy - low) for queue, load in queues.items()}
    active = [queue for queue in queues if room[queue] > 0 and weight[queue] > 0]
    while budget > 0 and active:
        total = sum(weight[queue] for queue in active)
        shares = {queue: budget * weight[queue] / total for queue in active}
        full = [queue for queue in active if shares[queue] >= room[queue]]
        if full:  # these get all they can use; the rest is shared again among the others
            for queue in full:
                want[queue] += room[queue]
                budget -= room[queue]
                active.remove(queue)
            continue
        for queue in active:
            whole = int(shares[queue])
            want[queue] += whole
            budget -= whole
        by_remainder = sorted(active, key=lambda q: shares[q] - int(shares[q]), reverse=True)
        for queue in by_remainder[:budget]:  # fewer than len(active) are left
            want[queue] += 1
        budget -= min(budget, len(by_remainder))
        break
    for queue, load in queues.items():  # running jobs with nothing due: keep their workers
        extra = min(budget, low + room[queue] - want[queue]) if load.busy else 0
        if extra > 0:
            want[queue] += extra
            budget -= extra
    return want


def step(queues: dict[str, QueueLoad], limits: Limits, ceiling: int | None = None) -> dict[str, int]:
    """The next targets: each queue's target (`workers`) moved toward `desired` by at most
    max_shift, shrinking first; growth stops at max_workers in all, and at `ceiling` (the
    workers free memory allows) when given. A queue is never set below min_workers; targets
    above max_workers in all (max_workers was just lowered) are cut to it at once."""
    goal = desired(queues, limits)
    shift, low = limits.max_shift, limits.min_workers
    new = {queue: max(low, load.workers) for queue, load in queues.items()}
    for queue in new:
        if new[queue] > goal[queue]:
            new[queue] = max(goal[queue], new[queue] - shift)
    excess = sum(new.values()) - limits.max_workers
    while excess > 0:  # only after max_workers was lowered: the fullest queue gives first
        queue = max((q for q in new if new[q] > low), key=lambda q: (new[q] - goal[q], new[q]))
        new[queue] -= 1
        excess -= 1
    cap = limits.max_workers if ceiling is None else min(limits.max_workers, ceiling)
    room = cap - sum(new.values())
    for queue in sorted(new, key=lambda q: goal[q] - new[q], reverse=True):
        if room <= 0:
            break
        up = min(shift, goal[queue] - new[queue], room)
        if up > 0:
            new[queue] += up
            room -= up
    return new
