"""A pool whose workers each serve one of its queues: balance = "simple" or "auto".

    supervisor, every balance_cooldown: storage.counts() --rebalance--> targets per queue
    every turn: manage() moves idle workers to the queues short of their target, spawns,
                retires idle ones past it; wanted() / claims() ask for jobs queue by queue;
                dispatch() gives a job only to a worker of its queue

The targets come from `balancing` (pure): fixed under "simple", a step toward each
queue's share of the load under "auto". A worker's queue is a label the supervisor
keeps (`Worker.queue`); moving a worker is changing it, so the job it runs is never
touched. Shrinking retires idle workers only (a planned exit, as recycling is); a
busy worker past its queue's target is parked (label None): it finishes what it
holds and takes nothing new until a queue needs it or it is idle and retired.
Growth stops at what free memory allows, measured as the largest USS of the pool's
workers, said once in the log when it holds the pool back.
"""

from __future__ import annotations

import math
from collections import Counter, deque

import psutil

from runtime.workers import balancing, protocol
from runtime.workers.balancing import AUTO, Limits, QueueLoad
from runtime.workers.pool import WorkerPool
from runtime.workers.process import owned_bytes
from runtime.workers.run_reports import EWMA
from runtime.workers.scheduling import free_slots, pick

MEMORY_RESERVE = 0.1  # of the machine's memory, left free when growing
MOST_WORKERS = 1024  # as the max_workers setting allows


def worker_pool(config, *args, **kwargs) -> WorkerPool:
    """The pool a [pools.NAME] table asks for: balanced or not."""
    kind = WorkerPool if config.balance == balancing.OFF else BalancedPool
    return kind(config, *args, **kwargs)


class BalancedPool(WorkerPool):
    balanced = True

    def __init__(self, config, *args, **kwargs):
        self.drained: set[str] = set()  # queues storage had too few jobs for: ask again on a wake-up
        super().__init__(config, *args, **kwargs)
        self.max_workers = config.max_workers  # SIGTTIN / SIGTTOU move it
        self.auto = config.balance == AUTO
        self.targets = self._start_targets()
        self.target = sum(self.targets.values())
        self.runtimes: dict[str, float] = {}  # average seconds per job, by queue (EWMA)
        self.next_step = 0.0 if self.auto else math.inf  # monotonic: when rebalance() is due
        self.memory_held = False  # growth held back by free memory (logged once)
        self._worker_bytes = 0  # the largest USS of its workers, when last measured
        self._plan: list = []  # ((queue,), jobs) each, from the last wanted()

    def _start_targets(self) -> dict[str, int]:
        cfg = self.config
        if self.auto:
            return {queue: cfg.min_workers for queue in cfg.queues}
        return balancing.even_split(cfg.queues, cfg.min_workers, self.max_workers)

    # -- claims: queue by queue ------------------------------------------------
    @property
    def maybe_more(self) -> bool:
        return len(self.drained) < len(self.config.queues)

    @maybe_more.setter
    def maybe_more(self, value: bool) -> None:
        if value:
            self.drained.clear()
        else:
            self.drained.update(self.config.queues)

    def no_more(self, due_at: float | None, queues=None) -> None:
        self.drained.update(self.config.queues if queues is None else queues)
        if due_at is not None:
            self.expect_due(due_at)

    def wanted(self, extra: int) -> int:
        """How many jobs to claim now, all queues together; `claims()` says of which queue.
        Each queue gets what its own workers could start at once, and its part of `extra`."""
        plan = self._plan = []
        if self.stopping:
            return 0
        buffered = Counter(run.job.queue for run in self.buffer) if self.buffer else {}
        prefetch, durations = self.config.prefetch, self.durations
        total = 0
        for queue, workers in self._assigned().items():
            if queue in self.drained or not workers:
                continue
            slots = free_slots(workers, durations, prefetch)
            held = buffered.get(queue, 0)
            if slots == 0 or held >= slots:
                continue
            want = slots + extra * len(workers) // max(1, self.target) - held
            plan.append(((queue,), want))
            total += want
        return total

    def claims(self) -> list:
        """((queue,), jobs) for each queue the last `wanted()` asked for."""
        return self._plan

    def dispatch(self, now: float) -> None:
        if not self.buffer:
            return
        assigned = self._assigned()
        prefetch, durations = self.config.prefetch, self.durations
        frames: dict = {}
        kept: deque = deque()
        for run in self.buffer:
            worker = pick(assigned.get(run.job.queue, ()), durations, prefetch)
            if worker is None:
                kept.append(run)  # its queue's workers are busy: it waits for one of them
            else:
                self._hand(worker, run, now, frames)
        self.buffer = kept
        self._send_frames(frames)

    def _assigned(self) -> dict[str, list]:
        """The active workers of each queue (parked ones, label None, are in no list)."""
        assigned: dict[str, list] = {queue: [] for queue in self.targets}
        for worker in self.workers.values():
            if worker.active and worker.queue is not None:
                assigned[worker.queue].append(worker)
        return assigned

    def _on_done(self, worker, done: protocol.Done, body: bytes, now: float) -> bool:
        run = worker.runs[0] if worker.runs else None
        settled = super()._on_done(worker, done, body, now)
        if settled and done.status != protocol.RETURNED:
            queue, seconds = run.job.queue, done.seconds
            average = self.runtimes.get(queue)
            self.runtimes[queue] = seconds if average is None else average + EWMA * (seconds - average)
        return settled

    # -- targets ------------------------------------------------------------------
    def rebalance(self, now: float, counts: dict) -> bool:
        """One step under "auto", from storage's counts (queue -> {"pending": due jobs, ...});
        True when it changed a target."""
        self.next_step = now + self.config.balance_cooldown
        if self.stopping or not self.auto:
            return False
        cfg = self.config
        busy = Counter(w.runs[0].job.queue for w in self.workers.values() if w.runs and not w.killed)
        loads = {queue: QueueLoad(counts.get(queue, {}).get("pending", 0), self.runtimes.get(queue),
                                  self.targets[queue], busy[queue]) for queue in cfg.queues}
        limits = Limits(cfg.min_workers, self.max_workers, cfg.balance_max_shift, cfg.balance_strategy)
        targets = balancing.step(loads, limits)
        growing = sum(targets.values()) > self.target
        ceiling = self._memory_ceiling() if growing else None
        if ceiling is not None and ceiling < sum(targets.values()):
            targets = balancing.step(loads, limits, ceiling)
            if not self.memory_held:
                self.memory_held = True
                self.log.warning("pool %s: free memory allows %d workers (each owns up to %d MiB), "
                                 "fewer than the load asks for; holding the pool there, below "
                                 "max_workers (%d)", cfg.name, ceiling, self._worker_bytes >> 20,
                                 self.max_workers)
        elif growing and self.memory_held:
            self.memory_held = False
            self.log.info("pool %s: free memory allows growing again", cfg.name)
        if targets == self.targets:
            return False
        self.log.debug("pool %s: workers per queue %s", cfg.name,
                       ", ".join(f"{queue} {n}" for queue, n in targets.items()))
        self.targets = targets
        self.target = sum(targets.values())
        return True

    def _memory_ceiling(self) -> int | None:
        """How many workers free memory allows: those alive, and one more for each largest
        worker's USS that fits in the available memory, less a reserve and less what the
        smaller workers would take to grow as large. None: none measured."""
        owned = [owned_bytes(w.pid, 0) for w in self.workers.values() if w.active]
        largest = self._worker_bytes = max(owned, default=0)
        if not largest:
            return None
        memory = psutil.virtual_memory()
        growth = sum(largest - size for size in owned if size)
        spare = max(0, memory.available - int(memory.total * MEMORY_RESERVE) - growth)
        return len(owned) + spare // largest

    def resize(self, delta: int) -> str:
        """SIGTTIN / SIGTTOU: max_workers one more or fewer, never below min_workers a queue."""
        cfg = self.config
        floor = cfg.min_workers * len(cfg.queues)
        self.max_workers = max(floor, min(MOST_WORKERS, self.max_workers + delta))
        if self.auto:
            self.next_step = 0.0  # step at the next chance
        else:
            self.targets = balancing.even_split(cfg.queues, cfg.min_workers, self.max_workers)
            self.target = sum(self.targets.values())
        return f"pool {cfg.name}: max_workers {self.max_workers}"

    def describe(self) -> dict:
        return dict(super().describe(), balance=self.config.balance, max_workers=self.max_workers,
                    targets=dict(self.targets))

    # -- workers --------------------------------------------------------------------
    def _keep_size(self, now: float) -> None:
        """Bring each queue to its target: idle workers past a queue's target (or parked) move
        to a queue short of workers, then new ones are spawned, then busy ones move (they take
        their new queue's jobs once done); what is left past the targets is retired if idle,
        parked if busy. Never more than max_workers alive and serving."""
        assigned = {queue: [] for queue in self.targets}
        spare = []
        for worker in list(self.workers.values()):
            if not worker.active:
                continue
            if worker.retire_at <= now:
                self.retire(worker, "max_time")
            else:
                assigned.get(worker.queue, spare).append(worker)
        for queue, workers in assigned.items():
            surplus = len(workers) - self.targets[queue]
            if surplus > 0:
                workers.sort(key=lambda w: len(w.runs))  # the idle ones leave first
                spare += workers[:surplus]
        spare.sort(key=lambda w: len(w.runs))
        alive = sum(min(len(w), self.targets[q]) for q, w in assigned.items()) + len(spare)
        cap = self.target if self.memory_held else self.max_workers
        short = sorted(((self.targets[q] - len(w), q) for q, w in assigned.items() if len(w) < self.targets[q]),
                       reverse=True)
        for need, queue in short:
            for _ in range(need):
                if spare and not spare[0].runs:
                    spare.pop(0).queue = queue
                elif alive < cap and now >= self.spawn_after:
                    self.spawn_worker(now).queue = queue
                    alive += 1
                elif spare:
                    spare.pop(0).queue = queue
                else:
                    break
        for worker in spare:
            if worker.runs:
                worker.queue = None  # parked: finishes what it holds, takes nothing new
            else:
                self.retire(worker, "scaled down")
