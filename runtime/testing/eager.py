"""The eager queue: jobs run in the test's process when the test asks, on a fake clock.

    with eager_queue() as q:            connect(...) in the code under test returns q's views
        checkout(order_id)              -> enqueues, as in production (the client's checks)
        q.run_until_empty()             -> claim (storage.exchange, every rule of the memory
                                           store: gates, batches, chains, failure hooks)
                                           -> run (runners: the worker's code) -> settle
        assert q.status(job_id).state == "succeeded"

The store is runtime.storage.memory, the reference model of every backend, on the queue's
fake clock: `advance(seconds)` moves it, `run_until_empty()` moves it to each delayed job,
backoff or rate limit slot as needed. Runs are inline by default: a job's `timeout` cannot
interrupt them; `eager_queue(run_in_worker=True)` runs each job in a forked worker that is
killed at its timeout, as under `jobrt start`.
"""

from __future__ import annotations

from contextlib import contextmanager

from runtime import events
from runtime.errors import JobrtError
from runtime.supervisor import run_context
from runtime.testing.runners import InlineRunner, WorkerRunner
from runtime.testing.stand_in_queue import Shared, StandInQueue, standing_in
from runtime.workers import retry_rules

CLAIM = 256  # jobs claimed at once: storage's claim costs a pass over the store
MAX_JOBS = 1_000_000  # runs one run_pending() / run_until_empty() makes at most by default
LEASE = 365 * 86400.0  # seconds: nothing rescues an eager run
OWNER = "eager"


class EagerError(JobrtError):
    """The eager queue cannot go on: a loop that never empties the queue, or a call to
    run_pending() from inside a job it runs."""


class EagerShared(Shared):
    """Shared, with what runs jobs: a runner, whether a cancel came, whether one runs now."""

    def __init__(self, config_path: str | None, run_in_worker: bool):
        super().__init__(config_path)
        runner = WorkerRunner if run_in_worker else InlineRunner
        extra = (self.pools[0],) if run_in_worker else ()
        self.runner = runner(self.specs, self.pool_for, self.clock.now, *extra)
        self.cancel_asked = False  # a cancel may have hit a claimed job not yet run
        self.running = False

    def close(self) -> None:
        self.runner.close()
        super().close()


class EagerQueue(StandInQueue):
    """A Queue whose jobs run when the test calls run_pending() or run_until_empty()."""

    def __init__(self, config: str | None = None, *, shared: EagerShared | None = None,
                 run_in_worker: bool = False):
        super().__init__(config, shared=shared or EagerShared(config, run_in_worker))

    def advance(self, seconds: float) -> float:
        """Move the fake clock `seconds` forward (nothing runs); the new time."""
        return self.shared.clock.advance(seconds)

    def run_pending(self, max_jobs: int = MAX_JOBS) -> int:
        """Run every job due now, and the ones they make due now (a chain's next step, a
        batch's callbacks, retries without backoff); how many runs. The clock stands still."""
        shared = self.shared
        if shared.running:
            raise EagerError("run_pending() / run_until_empty() was called from a job the eager "
                             "queue is running; call it from the test instead")
        shared.running = True
        try:
            return self._run_due(max_jobs)
        finally:
            shared.running = False

    def run_until_empty(self, max_jobs: int = MAX_JOBS) -> int:
        """Run jobs until none is left to run, moving the clock forward to each delayed job,
        retry backoff, release delay or rate limit slot; how many runs. EagerError after
        `max_jobs` runs (a job that enqueues itself forever)."""
        storage, clock = self.shared.storage, self.shared.clock
        ran = 0
        while True:
            ran += self.run_pending(max_jobs - ran)
            due = storage.next_due(self._queues())
            if due is None:
                return ran
            if due <= clock.now():
                raise EagerError(f"a job is due at {due} but could not be claimed; this is a bug "
                                 f"of the eager queue, please report it")
            clock.move_to(due)

    def cancel(self, job_id: int) -> str:
        self.shared.cancel_asked = True
        return super().cancel(job_id)

    def batch_cancel(self, batch_id: int, kill: bool = False) -> bool:
        self.shared.cancel_asked = True
        return super().batch_cancel(batch_id, kill)

    # -- the supervisor's part, here -------------------------------------------------
    def _queues(self) -> list[str]:
        """Every queue with a pending job: the config's in its pools' order, then the others
        by name."""
        order = self.shared.order
        others = sorted({queue for queue, _, _ in self.shared.storage.pending_by_queue_and_name()
                         if queue not in order})
        return order + others

    def _run_due(self, max_jobs: int) -> int:
        shared = self.shared
        storage, now = shared.storage, shared.clock.now
        hooks = events.registered()  # modules a test imported since the last call count too
        outcomes: list = []
        ran = 0
        while True:
            claimed = storage.exchange(OWNER, outcomes, self._queues(), CLAIM, now() + LEASE, now())
            outcomes = []
            if not claimed:
                return ran
            for job in run_context.attach(storage, claimed):
                if ran >= max_jobs:
                    storage.settle(OWNER, outcomes + [retry_rules.returned(job, now())
                                                      for job in claimed[len(outcomes):]])
                    raise EagerError(f"ran {ran} jobs and more are due: does a job enqueue itself "
                                     f"without end? (max_jobs={max_jobs})")
                if shared.cancel_asked and self._cancelled(job):
                    outcomes.append(retry_rules.cancelled(job, now()))
                    continue
                outcomes.append(shared.runner.run(job, hooks))
                ran += 1

    def _cancelled(self, job) -> bool:
        """Whether `job`, claimed and not yet run, was asked to cancel (as the supervisor
        learns from storage on its heartbeat)."""
        asked = dict(self.shared.storage.cancel_requests(OWNER))
        self.shared.cancel_asked = bool(asked)
        return asked.get(job.id) == job.attempt


@contextmanager
def eager_queue(config: str | None = None, run_in_worker: bool = False):
    """An EagerQueue that connect() returns inside the block (by url or config=, whatever the
    code under test names). `config`: a supervisor.toml whose checks its own enqueues get and
    whose pools' job defaults (tries, backoff, timeout) its runs get; `run_in_worker`: run each
    job in a forked worker, killed at its timeout."""
    with standing_in(EagerQueue(config, run_in_worker=run_in_worker)) as queue:
        yield queue
