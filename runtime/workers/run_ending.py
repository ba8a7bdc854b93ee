"""How a WorkerPool ends runs before they report: deadlines and memory limits enforced by
killing the worker's process group, q.cancel, and stopping (a grace, then kills).

A part of WorkerPool (its base class), kept apart because these paths share a shape:
kill a worker, turn its runs into Outcomes (retried, cancelled, or returned unstarted),
hand the rest back. They write only WorkerPool's own fields.
"""

from __future__ import annotations

import math
import os
import time

from runtime.workers import retry_rules
from runtime.workers.process import owned_bytes
from runtime.workers.records import Run, Worker

MEMORY_CHECK_EVERY = 0.1  # seconds between reads of busy workers' memory, with memory_limit_mb


class RunEnding:
    """The early ends of runs; methods of WorkerPool."""

    def retire_for_reload(self, now: float) -> None:
        """Replaced by a reload: take no new job; running ones finish within their timeout."""
        self.retired = True
        self.begin_stop(now, math.inf, "")

    def hurry(self, now: float) -> None:
        """The supervisor is stopping: a pool retired by a reload gets its grace from now."""
        if self.grace_deadline is not None:
            self.grace_deadline = min(self.grace_deadline, now + self.config.grace)
            self.late = (f"the supervisor stopped and the grace period ({self.config.grace:g} s) "
                         "ran out")

    def retire_all(self, reason: str) -> None:
        """Recycle every worker (each finishes its current job first)."""
        for worker in list(self.workers.values()):
            self.retire(worker, reason)

    def wait_all_dead(self) -> None:
        """Kill every worker and wait for each to be gone: for when no loop is left to hear
        their deaths."""
        for worker in list(self.workers.values()):
            worker.child.kill()
            try:
                os.waitpid(worker.pid, 0)
            except ChildProcessError:
                pass

    def enforce_deadlines(self, now: float) -> None:
        """Kill workers whose job overran its timeout, or grew past memory_limit_mb; when
        stopping past the grace, kill them all. Past the next due time, ask for jobs."""
        if self.due_at is not None and now >= self.due_at:
            self.due_at = None
            self.maybe_more = True
        if self.stopping and self.grace_deadline is not None and now >= self.grace_deadline:
            self.kill_all(self.late)
        limit = self.config.memory_limit_mb << 20
        sample = limit and now >= self.next_memory_check
        if sample:
            self.next_memory_check = now + MEMORY_CHECK_EVERY
        for worker in list(self.workers.values()):
            if not worker.runs or worker.killed:
                continue
            run = worker.runs[0]
            if run.deadline <= now:
                self._cut(worker, run, now, "timeout", retry_rules.TIMEOUT,
                          f"timed out after {run.timeout:g} s (worker and its process group killed)")
            elif sample and (owned := owned_bytes(worker.pid, limit)) > limit:
                self._cut(worker, run, now, retry_rules.MEMORY, retry_rules.MEMORY,
                          f"used {owned >> 20} MiB, over memory_limit_mb ({limit >> 20} MiB) "
                          "(worker and its process group killed)")

    def _cut(self, worker: Worker, run: Run, now: float, why: str, reason: str, error: str) -> None:
        """Kill a worker in the middle of `run`, which fails (retried while tries remain);
        `why` is the restart's label, `reason` the run's Outcome.reason."""
        self.on_readable(worker, now)  # it may have finished just in time
        if not worker.runs or worker.runs[0] is not run:
            return
        self.kill(worker, why)
        worker.runs.popleft()
        self._unreported(run, retry_rules.errored(run.job, run.options, self.config, error, None,
                                                  time.time(), reason))
        self.stats.finished(run.job.queue, reason, now - run.started, run.job.name)
        self.log.warning("job %d (%s) attempt %d %s", run.job.id, run.job.name, run.job.attempt, error)
        self._requeue(worker)

    def _unreported(self, run: Run, outcome) -> None:
        """How a run its worker never reported ended (killed, died, broke its pipes); when
        that fails the job for good, another worker runs its after_failure event hooks."""
        self._outcomes.append(outcome)
        if run.told is not None:
            self.event_relay.ended(run, outcome)

    def cancel(self, wanted: set, now: float) -> None:
        """Stop the runs asked to cancel, (job id, attempt) each: a claimed one not yet sent
        is dropped; one sent to a worker kills that worker and its process group. Each ends
        cancelled. Another job the worker held goes back to the queue, its attempt not
        counted: the one it was running (when the cancelled one was queued behind it) as
        interrupted, the ones queued behind as unstarted."""
        wall = time.time()
        for run in [run for run in self.buffer if (run.job.id, run.job.attempt) in wanted]:
            self.buffer.remove(run)
            self._outcomes.append(retry_rules.cancelled(run.job, wall))
        for worker in list(self.workers.values()):
            if worker.killed or not any((r.job.id, r.job.attempt) in wanted for r in worker.runs):
                continue
            self.on_readable(worker, now)  # a run that ended just in time keeps its outcome
            hit = [run for run in worker.runs if (run.job.id, run.job.attempt) in wanted]
            if not hit:
                continue
            self.kill(worker, "cancel")
            for run in hit:
                worker.runs.remove(run)
                self._outcomes.append(retry_rules.cancelled(run.job, wall))
                self.stats.finished(run.job.queue, "cancelled", now - (run.started or now),
                                    run.job.name)
                self.log.warning("job %d (%s) attempt %d cancelled while running: worker %d killed",
                                 run.job.id, run.job.name, run.job.attempt, worker.pid)
            if worker.runs and worker.runs[0].started is not None:
                self._outcomes.append(retry_rules.returned(
                    worker.runs.popleft().job, wall,
                    "interrupted: a job queued behind it on its worker was cancelled"))
            self._requeue(worker)

    def begin_stop(self, now: float, grace: float, late: str) -> None:
        """Take no new job; running ones get `grace` seconds, then are killed, `late` saying why."""
        self.stopping = True
        self.grace_deadline = now + grace
        self.late = late
        wall = time.time()
        while self.buffer:
            self._outcomes.append(retry_rules.returned(self.buffer.popleft().job, wall))
        for worker in self.workers.values():
            if worker.retiring is None and not worker.killed:
                self.retire(worker, "stop")

    def drop_claims(self, now: float) -> int:
        """Its supervisor fenced itself: these claims may be another supervisor's by now.
        Kill every worker running a job and forget the jobs claimed but not started, writing
        no outcome for either: their leases decide (rescued elsewhere once expired, or by
        this supervisor when storage answers again). A run that ended just before keeps its
        outcome. Returns how many jobs were dropped."""
        dropped = len(self.buffer)
        self.buffer.clear()
        for worker in list(self.workers.values()):
            if not worker.killed and worker.runs:
                self.on_readable(worker, now)  # it may have finished just in time
            if worker.killed or not worker.runs:
                continue
            dropped += len(worker.runs)
            worker.runs.clear()
            self.kill(worker, "fenced")
        return dropped

    def kill_all(self, why: str) -> None:
        """Stop, killing every worker now; their running jobs go back to pending, not counted
        as tried."""
        self.stopping = True
        wall = time.time()
        for worker in self.workers.values():
            if worker.killed:
                continue
            worker.killed = why
            worker.child.kill()
            if worker.runs:
                run = worker.runs.popleft()
                self._outcomes.append(retry_rules.returned(run.job, wall, f"interrupted: {why}"))
            self._requeue(worker)
