"""How the eager queue runs one claimed job and learns its Outcome: inline, in this process
(the default), or in a forked worker with its real timeout (`run_in_worker=True`).

    claimed job --Run + RUN frame (event_relay.tell: what its end would mean)-->
        inline:    workers.child.run_job, here  --status, body-->  retry_rules.reported
        in worker: workers.pool.WorkerPool on a selector, as the supervisor drives it
    --> Outcome (its times on the fake clock), which the eager queue settles in storage

Both use the workers' own code: the RUN frame the supervisor would send, the function the
worker runs it with, the retry rules the supervisor settles with, and the runtime.events
hooks around the run (an after_failure for a run that ended without its worker, too).
An inline run cannot be interrupted, so a job's timeout is not enforced inline.
"""

from __future__ import annotations

import logging
import os
import time

from runtime import events
from runtime.options import JobOptions
from runtime.workers import child, protocol, retry_rules, worker_events
from runtime.workers.event_relay import EventRelay
from runtime.workers.pool import WorkerPool
from runtime.workers.records import Run
from runtime.workers.selector import EventLoop
from runtime.workers.stats import Stats

log = logging.getLogger("jobrt.testing")
log.addHandler(logging.NullHandler())

TURN = 0.05  # seconds the in-worker runner waits at most per turn for its worker


def _parsed(frames: bytes) -> list:
    """Frames as the worker reads them: (kind, header, body) each."""
    return protocol.FrameReader().feed(frames)


class InlineRunner:
    """Runs each job in this process, as a worker would run it."""

    def __init__(self, specs, pool_for, clock):
        self.specs = specs  # name -> JobSpec (what a worker's registry holds)
        self.pool_for = pool_for  # queue -> the PoolConfig whose defaults its jobs get
        self.clock = clock

    def run(self, job, hooks: events.Hooks) -> "retry_rules.Outcome":
        pool = self.pool_for(job.queue)
        options = JobOptions.decode(job.options)
        run = Run(job, options, options.timeout or pool.timeout)
        relay = EventRelay(pool) if any(hooks) else None
        if relay is None:
            sent = protocol.run_frame(job.id, job.attempt, job.name, job.payload, job.context)
        else:
            relay.tell([run], self.clock())
            sent = relay.run_frame(run)
        [(_, header, payload)] = _parsed(sent)
        status, body, delay, _seconds = child.run_job(self.specs, hooks, header, payload)
        error = tb = None
        if status in (protocol.ERROR, protocol.FAIL):
            error, tb = protocol.parse_error(body)
        outcome, _ = retry_rules.reported(run, pool, status, body, error, tb, delay, self.clock())
        if relay is not None:
            relay.ended(run, outcome, status)
            _notify(hooks, relay)
        return outcome

    def close(self) -> None:
        pass


def _notify(hooks: events.Hooks, relay: EventRelay) -> None:
    """Run the hooks of the EVENT frames `relay` keeps (a run that ended without its worker
    running them), here."""
    if relay.waiting:
        worker_events.notify(hooks, [(header, body) for _, header, body in _parsed(b"".join(relay.waiting))])
        relay.waiting.clear()


class WorkerRunner:
    """Runs each job in a forked worker of a one-worker WorkerPool, its timeout enforced by
    killing the worker's process group, exactly as under `jobrt start`."""

    def __init__(self, specs, pool_for, clock, config):
        self.specs = specs
        self.pool_for = pool_for
        self.clock = clock
        self.registry: dict = {}  # what workers fork with: the names of the jobs run so far
        self.loop = EventLoop(relay=None)  # what jobs print goes to this process's stdout
        self.pool = WorkerPool(config, self.registry, self.loop, Stats(),
                               owner=f"eager:{os.getpid()}", logger=log, events=True)

    def run(self, job, hooks: events.Hooks) -> "retry_rules.Outcome":
        if job.name not in self.registry and self.specs.get(job.name) is not None:
            self.registry[job.name] = self.specs.get(job.name)
            self.pool.retire_all("a new job")  # its worker forked without it
        pool = self.pool
        pool.config = self.pool_for(job.queue)  # that queue's defaults: tries, backoff, timeout
        pool.event_relay.config = pool.config
        pool.give([job])
        outcomes = ()
        while not outcomes:
            now = time.monotonic()
            pool.manage(now)
            pool.dispatch(now)
            self.loop.wait(min(TURN, max(0.0, pool.next_timer(now) - now)))
            pool.enforce_deadlines(time.monotonic())
            outcomes = pool.take_outcomes()
        pool.manage(time.monotonic())  # an after_failure of a killed run goes to the next worker
        [outcome] = outcomes
        shift = self.clock() - time.time()  # the worker's times are the wall clock's
        return outcome._replace(at=outcome.at + shift, available_at=None if outcome.available_at is None
                                else outcome.available_at + shift)

    def close(self) -> None:
        pool = self.pool
        pool.begin_stop(time.monotonic(), 1.0, "the eager queue closed")
        while not pool.done:
            now = time.monotonic()
            self.loop.wait(min(TURN, max(0.0, pool.next_timer(now) - now)))
            pool.enforce_deadlines(time.monotonic())
            pool.manage(time.monotonic())
        pool.take_outcomes()
