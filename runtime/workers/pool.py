"""One pool of workers as the supervisor sees it: who runs what, until when.

A WorkerPool holds the jobs its supervisor claimed for it (`buffer`), hands
them to workers over their pipes, turns the frames that come back into
Outcomes, enforces each run's deadline by killing the worker's process group,
and recycles workers after max_jobs / max_time / max_memory_mb; a worker that
grows past memory_limit_mb while it runs a job is killed, as on a timeout.

Which worker takes a job is `scheduling`'s choice; how a run's end becomes an
Outcome, `retry_rules`'; the frames workers send are read in `run_reports`, and the
runs ended early (deadlines, memory, cancel, stop) in `run_ending`, both base
classes. A pool with balance = "simple" or "auto" is a `balanced_pool.BalancedPool`.
A job sent but not yet started is never
counted as run: if its worker dies or is recycled, it goes back to the buffer.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import deque

import psutil

from runtime.options import JobOptions
from runtime.storage.base import FAILED
from runtime.workers import protocol, retry_rules, sandbox
from runtime.workers.child import EXIT_BOOT, EXIT_CRASH, become_worker
from runtime.workers.event_relay import EventRelay
from runtime.workers.process import describe_exit
from runtime.workers.records import Run, Worker
from runtime.workers.run_ending import RunEnding
from runtime.workers.run_reports import RunReports
from runtime.workers.scheduling import free_slots, pick

log = logging.getLogger("jobrt")

SUCCESSOR_JOBS = 10  # ... and at most this many jobs
SUCCESSOR_AHEAD = 0.02  # seconds of a worker's last jobs during which its successor boots (1-3 ms)


class WorkerPool(RunReports, RunEnding):
    """One pool of workers. Only its own methods change its fields; its owner (the supervisor's
    loop, or the embedded Pool's) asks: `wanted()` how many jobs it can take now, `give(jobs)`
    them, `take_outcomes()` how the runs ended, `begin_stop()`, `kill_all()`."""

    balanced = False  # every worker serves every queue of the pool, in priority order

    def __init__(self, config, registry, loop, stats, config_path: str | None = None,
                 owner: str = "", fresh_modules: tuple = (), module_path: tuple = (), logger=log,
                 events: bool = False):
        self.config = config
        self.event_relay = EventRelay(config) if events else None  # events: the modules register hooks
        self.log = logger
        self.setup = sandbox.resolve(config, config_path)._replace(
            owner=owner, fresh_modules=fresh_modules, module_path=module_path)
        self.retired = False  # replaced by a reload: stops, then goes
        self.registry = registry
        self.loop = loop  # the selector: watch/unwatch/want_write, relay_output
        self._outcomes: list = []  # how runs ended, until the owner takes them
        self.stats = stats
        self.target = config.workers
        self.workers: dict[int, Worker] = {}
        self.buffer: deque = deque()
        self.durations: dict[str, float] = {}
        self.maybe_more = True
        self.due_at: float | None = None
        self.stopping = False
        self.grace_deadline: float | None = None
        self.late = ""  # why running jobs are killed when the grace runs out
        self.failed_boots = 0
        self.spawn_after = 0.0
        self.next_memory_check = 0.0
        self.parent_pid = os.getpid()

    # -- what the owner asks -------------------------------------------------
    def give(self, jobs) -> None:
        """Jobs for this pool's workers, in the order they should start: claimed ones (their
        options as stored) or the embedded Pool's batches (JobOptions, and a count of calls)."""
        timeout, buffer, given = self.config.timeout, self.buffer, len(self.buffer)
        for job in jobs:
            options = job.options if isinstance(job.options, JobOptions) else JobOptions.decode(job.options)
            buffer.append(Run(job, options, options.timeout or timeout, getattr(job, "calls", 1)))
        if self.event_relay is not None:  # now is when they were claimed
            self.event_relay.tell(list(buffer)[given:], time.time())

    def no_more(self, due_at: float | None, queues=None) -> None:
        """Storage has no more jobs for this pool now (of `queues`, those it asked for); the next
        is due at `due_at` (monotonic)."""
        self.maybe_more = False
        self.due_at = due_at

    def wake(self) -> None:
        """There may be new jobs: ask for some at the next chance."""
        self.maybe_more = True

    def take_outcomes(self) -> list | tuple:
        """How the runs ended since the last call (Outcomes, oldest first)."""
        if not self._outcomes:
            return ()  # every turn asks: no new list when there is nothing
        outcomes, self._outcomes = self._outcomes, []
        if any(o.state == FAILED or o.overlap_key is not None for o in outcomes):
            # Its settle may enqueue a failure hook, or let the next job with its overlap
            # key through: claim soon.
            self.maybe_more = True
        return outcomes

    def resize(self, delta: int) -> str:
        """One worker more (+1) or fewer (-1); never fewer than one. Says what it is now."""
        self.target = max(1, self.target + delta)
        return f"pool {self.config.name}: {self.target} workers"

    @property
    def done(self) -> bool:
        """Stopped, and every worker is gone."""
        return self.stopping and not self.workers

    def pids(self) -> list[int]:
        return list(self.workers)

    def busy(self) -> tuple[int, int]:
        """(workers running a job, workers)."""
        return sum(1 for worker in self.workers.values() if worker.runs), len(self.workers)

    # -- workers ----------------------------------------------------------
    def spawn_worker(self, now: float) -> Worker:
        cfg = self.config
        registry, parent, setup = self.registry, self.parent_pid, self.setup
        child = self.loop.fork_worker(setup, lambda r, w: become_worker(r, w, parent, registry, setup),
                                      self.loop.relay is not None)
        max_jobs = cfg.max_jobs + random.randint(0, cfg.max_jobs // 10) if cfg.max_jobs else 0
        retire_at = now + cfg.max_time * random.uniform(1.0, 1.1) if cfg.max_time else float("inf")
        worker = Worker(child, max_jobs, retire_at)
        self.workers[child.pid] = worker
        self.loop.watch(worker, self)
        self.log.info("pool %s: worker %d started", cfg.name, child.pid)
        return worker

    def retire(self, worker: Worker, reason: str) -> None:
        """Ask a worker to finish its current job, hand back the rest and exit."""
        if worker.retiring or worker.killed:
            return
        worker.retiring = reason
        if reason in ("max_jobs", "max_time", "max_memory"):
            for other in self.workers.values():
                if other.standby:  # its successor, started ahead (_keep_size), takes over now
                    other.standby = False
                    break
            self.log.info("pool %s: recycling worker %d (%s, %d jobs done)",
                     self.config.name, worker.pid, reason, worker.jobs_done)
            self.stats.restarted(self.config.name, reason)
        self.send(worker, protocol.STOP_FRAME)

    def kill(self, worker: Worker, reason: str) -> None:
        worker.killed = reason
        worker.child.kill()
        self.stats.restarted(self.config.name, reason)

    def send(self, worker: Worker, data: bytes) -> None:
        if worker.write(data):
            self.loop.want_write(worker, True, self)

    def on_writable(self, worker: Worker) -> None:
        if worker.flush():
            self.loop.want_write(worker, False, self)

    # -- deaths and deadlines -----------------------------------------------
    def on_exit(self, worker: Worker, now: float) -> None:
        self.on_readable(worker, now)  # results written just before death count
        self.loop.relay_output(worker, end_of_job=True)
        status = worker.child.reap()
        if status is None:
            return
        how = describe_exit(status)
        if worker.killed:
            self.log.info("pool %s: worker %d killed (%s)", self.config.name, worker.pid, worker.killed)
        elif worker.said_bye:
            self.log.debug("pool %s: worker %d exited (%s)", self.config.name, worker.pid, worker.retiring)
        elif worker.boot_error is not None or os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_BOOT:
            # It ran nothing: what was sent to it goes back untouched, no attempt counted.
            self.stats.restarted(self.config.name, "boot")
            self.log.error("pool %s: worker %d could not start, %s; retrying in %.2g s: %s",
                           self.config.name, worker.pid, how, self._boot_failed(now),
                           worker.boot_error or "(it gave no reason)")
        else:
            self.stats.restarted(self.config.name, "signal" if os.WIFSIGNALED(status) else "crash")
            if worker.runs:
                run = worker.runs.popleft()
                self._unreported(run, retry_rules.lost(run, self.config, status, how, EXIT_CRASH, time.time()))
                self.stats.finished(run.job.queue, "crashed", now - run.started, run.job.name)
                self.log.warning("pool %s: worker %d %s while running job %d (%s)",
                            self.config.name, worker.pid, how, run.job.id, run.job.name)
            else:
                self.log.warning("pool %s: worker %d %s while idle", self.config.name, worker.pid, how)
                if worker.jobs_done == 0:
                    self._boot_failed(now)
        self._requeue(worker)
        self.loop.unwatch(worker)
        worker.child.close()
        del self.workers[worker.pid]

    def _boot_failed(self, now: float) -> float:
        """Back off respawning after a worker died before finishing any job; the delay."""
        self.failed_boots += 1
        delay = min(10.0, 0.05 * 2 ** self.failed_boots)
        self.spawn_after = now + delay
        return delay

    # -- scheduling -----------------------------------------------------------
    def dispatch(self, now: float) -> None:
        buffer = self.buffer
        frames: dict[Worker, list[bytes]] = {}  # one write per worker: a syscall, a wake-up
        while buffer:
            worker = pick(self.workers.values(), self.durations, self.config.prefetch)
            if worker is None:
                break
            self._hand(worker, buffer.popleft(), now, frames)
        self._send_frames(frames)

    def _hand(self, worker: Worker, run: Run, now: float, frames: dict) -> None:
        """Give `run` to `worker`: its RUN frame joins those `frames` holds for the worker."""
        if not worker.runs:
            run.start(now)
        worker.runs.append(run)
        job = run.job
        frames.setdefault(worker, []).append(
            protocol.run_frame(job.id, job.attempt, job.name, job.payload, job.context)
            if run.told is None
            else self.event_relay.run_frame(run))

    def _send_frames(self, frames: dict) -> None:
        for worker, sent in frames.items():
            self.send(worker, sent[0] if len(sent) == 1 else b"".join(sent))

    def wanted(self, extra: int) -> int:
        """How many jobs to claim now: one per worker that could start a job at once,
        more for workers running short jobs, plus `extra` read-ahead. A busy pool claims
        nothing, so a job enqueued later on a higher-priority queue is not overtaken."""
        if self.stopping or not self.maybe_more:
            return 0
        slots = free_slots(self.workers.values(), self.durations, self.config.prefetch)
        if slots == 0 or len(self.buffer) >= slots:
            return 0
        return slots + extra - len(self.buffer)

    def expect_due(self, at: float) -> None:
        """A job this pool may serve becomes due at `at` (monotonic): claim then."""
        if self.due_at is None or at < self.due_at:
            self.due_at = at

    def manage(self, now: float) -> None:
        """Recycle workers past max_time, keep the pool at its target size; hand the events
        of runs that ended without their worker to a worker."""
        if not self.stopping:
            self._keep_size(now)
        if self.event_relay is not None and self.event_relay.waiting:
            self.event_relay.deliver(self.workers.values(), self)

    def _keep_size(self, now: float) -> None:
        active = 0
        standby = ending = None
        for worker in list(self.workers.values()):
            if worker.active:
                if worker.standby:
                    standby = worker
                elif worker.retire_at <= now:
                    self.retire(worker, "max_time")
                elif active >= self.target and not worker.runs:
                    self.retire(worker, "scaled down")
                else:
                    active += 1
                    if ending is None and self._ending(worker):
                        ending = worker
        if standby is not None and active < self.target:
            standby.standby = False  # a worker left: its successor, started ahead, takes over
            active += 1
            standby = None
        while active < self.target and now >= self.spawn_after:
            self.spawn_worker(now)
            active += 1
        if ending is not None and standby is None and now >= self.spawn_after:
            # Recycling costs no empty slot: the successor boots while the worker it replaces
            # runs its last jobs, and takes no job before that one is told to stop.
            self.spawn_worker(now).standby = True

    def _ending(self, worker: Worker) -> bool:
        """Whether `worker` reaches its max_jobs within SUCCESSOR_AHEAD seconds of work, at the
        slowest average any job of this pool took (jobs of unknown length: never), ..."""
        if not worker.max_jobs or not self.durations:
            return False
        left = worker.max_jobs - worker.jobs_done
        # and within its last SUCCESSOR_JOBS jobs: short jobs arriving slowly keep a worker
        # alive long after its quota is near in work, and a standby would idle all that time
        return left <= SUCCESSOR_JOBS and left * max(max(self.durations.values()), 1e-6) <= SUCCESSOR_AHEAD

    def held(self):
        """The jobs this pool holds a claim on: buffered, or sent to a live worker."""
        for run in self.buffer:
            yield run.job
        for worker in self.workers.values():
            if not worker.killed:
                for run in worker.runs:
                    yield run.job

    def next_timer(self, now: float) -> float:
        """The nearest moment (monotonic) this pool needs a turn: outcomes to hand over, a
        deadline, a memory check, a recycle, a respawn."""
        if self._outcomes:
            return now
        nearest = float("inf")
        for worker in self.workers.values():
            if worker.runs and not worker.killed:
                nearest = min(nearest, worker.runs[0].deadline)
                if self.config.memory_limit_mb:
                    nearest = min(nearest, self.next_memory_check)
            if worker.active:
                nearest = min(nearest, worker.retire_at)
        for moment in (self.due_at, self.grace_deadline):
            if moment is not None:
                nearest = min(nearest, moment)
        if self.spawn_after > now:
            nearest = min(nearest, self.spawn_after)
        return nearest

    def describe_workers(self) -> list[dict]:
        """One entry per worker for heartbeats (`jobrt status`), with its memory read now."""
        for worker in self.workers.values():
            try:
                worker.rss = psutil.Process(worker.pid).memory_info().rss
            except psutil.Error:
                pass
        busy = lambda w: "busy" if w.runs else "idle"  # noqa: E731
        return [{"pid": w.pid, "pool": self.config.name, "queue": w.queue,
                 "state": w.killed and "killed" or w.retiring and "stopping" or w.standby and "standby"
                 or busy(w),
                 "jobs": w.jobs_done, "rss": w.rss} for w in self.workers.values()]

    def describe(self) -> dict:
        """This pool for heartbeats (`jobrt status`): its queues, and how many workers it keeps."""
        return {"queues": list(self.config.queues), "workers": self.target, "balance": "off"}
