"""Schedule ticks for the Supervisor: which ticks are due, and recording them in storage.

    Supervisor._timeout --next_timer()--> the loop waits until the nearest tick
    Supervisor._periodic --run()--> due_ticks + plan (runtime.schedules) --> Storage.enqueue_ticks
                                                                              (one row per tick:
                                                                               one supervisor wins)

Every supervisor computes the ticks of every schedule and asks storage to record each
one; the row unique on (schedule, tick time) makes exactly one of them enqueue its job.
A supervisor keeps, per schedule, a cursor: the newest tick it has handled. It starts at
the schedule's newest tick row (so the ticks of a downtime are due at once and catch-up
decides about them), or at the start when the schedule has none. No thread, no sleep:
the loop's wait ends at the next tick.
"""

from __future__ import annotations

import logging
import time

from runtime.config.schedules import check_jobs
from runtime.errors import JobrtError, StorageError
from runtime.schedules import due_ticks, has_late, plan, tick_job
from runtime.storage.ticks import ENQUEUED, MISSED, SKIPPED, TAKEN, NewTick

log = logging.getLogger("jobrt")

RETRY_AFTER = 1.0  # seconds before ticks storage could not take are tried again
RETRY_CONTENDED = 0.05  # ... when SQLite's write lock was busy (another supervisor's turn)


def job_builder(config, registry):
    """The Queue that builds the schedules' jobs (never stores: the Ticker does), from the
    registry the supervisor collected, so no job module is imported again."""
    from runtime.client import Queue

    return Queue(None, config.modules, config.module_path, config.path,
                 pools={name: pool.queues for name, pool in config.pools.items()},
                 limiters=config.rate_limits, registry=registry)


def check_schedules(config, registry) -> None:
    """ConfigError naming the schedule's key when a schedule's job cannot be built."""
    check_jobs(config.schedules, job_builder(config, registry), config.path)


class Ticker:
    """The schedules of one supervisor: their cursors and when the next tick is due."""

    def __init__(self, config, registry, metrics=None):
        self.metrics = metrics
        self.schedules: dict = {}
        self.cursors: dict[str, float] = {}  # schedule -> newest tick handled (epoch s)
        self.started: dict[str, float] = {}  # schedule -> when the cursor was read from storage
        self.next: dict[str, float | None] = {}  # schedule -> its next tick after the cursor
        self.retry_at = 0.0  # monotonic: storage failed, try again then
        self.failing = False  # storage failed, and that was logged
        self.use(config, registry)

    def use(self, config, registry) -> None:
        """Take the schedules of `config` (checked: ConfigError). A schedule kept by name
        keeps its cursor (a reload neither repeats nor loses a tick); a new one starts at
        its newest tick row."""
        check_schedules(config, registry)
        self.builder = job_builder(config, registry)
        self.schedules = dict(config.schedules)
        for name in list(self.cursors):
            if name not in self.schedules:
                del self.cursors[name], self.started[name]
        self.next = {name: self._next(name) for name in self.schedules}

    def _next(self, name: str) -> float | None:
        cursor = self.cursors.get(name)
        return None if cursor is None else self.schedules[name].next_after(cursor)

    def next_timer(self, now: float) -> float:
        """The monotonic time the loop should wake for the next tick (inf: none)."""
        if not self.schedules:
            return float("inf")
        if len(self.cursors) < len(self.schedules):
            return max(now, self.retry_at)  # cursors still to read
        due = [at for at in self.next.values() if at is not None]
        if not due:
            return float("inf")
        return max(self.retry_at, now + max(0.0, min(due) - time.time()))

    def run(self, storage, wall: float, now: float) -> int:
        """Record the ticks due at `wall` (epoch s); `now` is monotonic. Returns how many
        jobs this supervisor enqueued. A storage failure is logged and tried again soon."""
        if not self.schedules or now < self.retry_at:
            return 0
        try:
            self._read_cursors(storage, wall)
            enqueued = self._record_due(storage, wall)
        except StorageError as exc:
            if not exc.contended and not self.failing:
                log.warning("schedules: cannot record ticks (%s); trying again every %g s",
                            exc, RETRY_AFTER)
                self.failing = True
            self.retry_at = now + (RETRY_CONTENDED if exc.contended else RETRY_AFTER)
            return 0
        if self.failing:
            log.info("schedules: recording ticks again")
            self.failing = False
        return enqueued

    def _read_cursors(self, storage, wall: float, names=None) -> None:
        missing = [name for name in self.schedules if name not in self.cursors] if names is None \
            else names
        if not missing:
            return
        rows = storage.last_ticks(missing)
        for name in missing:
            row = rows.get(name)
            newer = row is not None and row.tick_at > self.cursors.get(name, float("-inf"))
            if names is None:  # first read: from the newest row, else from now
                self.cursors[name] = row.tick_at if row is not None else wall
                self.started[name] = wall
            elif newer:  # a refresh: another supervisor got further
                self.cursors[name] = row.tick_at
            self.next[name] = self._next(name)

    def _record_due(self, storage, wall: float) -> int:
        due = self._due(wall)
        late = [name for name, (ticks, _) in due.items() if has_late(ticks, self.started[name])]
        if late:  # before calling ticks missed: maybe another supervisor ran them
            self._read_cursors(storage, wall, late)
            due = self._due(wall)
        ticks: list[NewTick] = []
        for name, (found, complete) in due.items():
            schedule = self.schedules[name]
            for planned in plan(schedule, found, complete, self.started[name]):
                job = self._job(schedule, planned.tick_at, wall) if planned.run else None
                if planned.run and job is None:
                    continue  # logged: its config changed under it
                ticks.append(NewTick(name, planned.tick_at, job, schedule.overlap == "skip",
                                     planned.missed))
        results = storage.enqueue_ticks(ticks, wall) if ticks else []
        for name, (found, _) in due.items():
            self.cursors[name] = found[-1]
            self.next[name] = self._next(name)
        return self._count(ticks, results)

    def _due(self, wall: float) -> dict[str, tuple[list[float], bool]]:
        due = {}
        for name, at in self.next.items():
            if at is not None and at <= wall:
                found, complete = due_ticks(self.schedules[name], self.cursors[name], wall)
                if found:
                    due[name] = (found, complete)
        return due

    def _job(self, schedule, tick_at: float, wall: float):
        try:
            return tick_job(self.builder, schedule, tick_at, wall)
        except JobrtError as exc:  # checked at start: only a job whose options changed since
            log.error("schedule %s: cannot enqueue its tick at %s: %s", schedule.name,
                      time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(tick_at)), exc)
            return None

    def _count(self, ticks: list[NewTick], results) -> int:
        enqueued = 0
        for tick, result in zip(ticks, results):
            if result.outcome == TAKEN:
                continue
            if result.outcome == ENQUEUED:
                enqueued += 1
                log.debug("schedule %s: tick %.3f enqueued as job %d", tick.schedule,
                          tick.tick_at, result.job_id)
            elif result.outcome == SKIPPED:
                log.debug("schedule %s: tick %.3f skipped, its previous job still runs",
                         tick.schedule, tick.tick_at)
            if tick.missed:
                log.info("schedule %s: %d tick(s) missed before %.3f (catch_up = %s)",
                         tick.schedule, tick.missed, tick.tick_at,
                         self.schedules[tick.schedule].catch_up)
            if self.metrics is not None:
                if result.outcome != MISSED:
                    self.metrics.schedule_ticked(tick.schedule, result.outcome)
                if tick.missed:
                    self.metrics.schedule_ticked(tick.schedule, MISSED, tick.missed)
        return enqueued
