"""The supervisor's side of runtime.events: what it tells workers so they run the right hooks.

    WorkerPool.give(jobs) --tell: at the claim time--> Run.told = (error_end, release_end)
    WorkerPool.dispatch   --RUN frame with events-->  worker: before_run, the job, after_* hooks
    a run failed for good whose worker did not run its after_failure hooks (killed, lost,
    or retry_until passed while it ran) --EVENT frame--> a live worker, before its next job

A WorkerPool has an EventRelay only when its job modules register hooks: without one
no code here runs and RUN frames stay as short as ever. The hooks themselves run in
workers only (DESIGN invariant 2); this module builds frames and never reads payloads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from runtime import events
from runtime.backoff import backoff_delay
from runtime.storage.base import FAILED
from runtime.workers import protocol, retry_rules

MAX_WAITING = 10_000  # EVENT frames kept while no worker can take them (all dead, or booting)


class _LowestDraw:
    """A random source whose every draw is the lowest: the least delay a jittered backoff
    can give."""

    @staticmethod
    def uniform(low: float, _high: float) -> float:
        return low


_LOWEST = _LowestDraw()


def hooks_registered() -> bool:
    """Whether the modules imported here (the job modules a worker forks with) register hooks."""
    return any(events.registered())


class EventRelay:
    """The events side of one WorkerPool: `tell` runs what their end would mean, build
    their RUN frames, and keep and `deliver` the EVENT frames of runs that ended without
    their worker."""

    def __init__(self, pool_config):
        self.config = pool_config  # its tries and backoff: the defaults of retry_rules
        self.waiting: deque = deque(maxlen=MAX_WAITING)

    def tell(self, runs, claimed_at: float) -> None:
        """Decide, for runs just claimed, what an exception and a release would mean, by
        retry_rules itself: `error_end`, None when a raise would be retried, else what the
        failure adds to the error; `release_end`, None or the error of the failure.

        retry_until is a moment, so the verdict depends on when the run ends, which is not
        known yet: it is judged at the claim time (`claimed_at`, wall clock) with the least
        delay the backoff can draw. A run told "final" is final however late it ends; one
        told "retried" may still pass retry_until while it runs, and then `ended` sends its
        after_failure as an EVENT frame."""
        pool = self.config
        for run in runs:
            job, options = run.job, run.options
            judged = options
            if options.retry_until is not None:  # only then does the backoff drawn matter
                policy = pool.backoff if options.backoff is None else options.backoff
                judged = replace(options, backoff=backoff_delay(policy, job.attempt, _LOWEST))
            raised = retry_rules.errored(job, judged, pool, "", None, claimed_at)
            released = retry_rules.released(job, options, pool, 0.0, claimed_at)
            # errored's error for a failure is f"{error} (why)": with error "" it is the ending
            run.told = (raised.error if raised.state == FAILED else None,
                        released.error if released.state == FAILED else None)

    @staticmethod
    def run_frame(run) -> bytes:
        job = run.job
        return protocol.run_frame_with_events(job.id, job.attempt, job.name, job.payload, job.queue,
                                              *run.told, job.retried_at, job.context)

    def ended(self, run, outcome, status: str | None = None) -> None:
        """`run` (told) ended as `outcome`; `status` is what its worker reported, None when it
        did not. A failure for good whose worker did not run the after_failure hooks itself
        (it was killed, or died, or was told the job would be retried) gets an EVENT frame."""
        if outcome.state != FAILED:
            return
        error_end, release_end = run.told
        if status == protocol.FAIL or status == protocol.ERROR and error_end is not None \
                or status == protocol.RELEASE and release_end is not None:
            return  # the worker ran them
        job = run.job
        self.waiting.append(protocol.event_frame(events.AFTER_FAILURE, job.id, job.attempt, job.name,
                                                 job.queue, outcome.error, job.payload))

    def deliver(self, workers, pool) -> None:
        """Send the waiting EVENT frames to the worker likely to read them first: one taking
        jobs, the least busy; while the pool stops, one still alive and not yet gone. With
        none, they wait for the next call (a respawned worker)."""
        alive = [w for w in workers if not w.killed and not w.said_bye]
        if not alive:
            return
        worker = min(alive, key=lambda w: (not w.active, len(w.runs)))
        pool.send(worker, b"".join(self.waiting))
        self.waiting.clear()
