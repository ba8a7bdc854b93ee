"""What applications use: connect() to a database, enqueue jobs, read their state.

A client never runs jobs; it writes them durably and wakes the supervisors.
"""

from __future__ import annotations

import contextlib
import gc
import time

from runtime.config.load import load_config
from runtime import batching, chaining, stand_in
from runtime.errors import JobNotFound
from runtime.job_building import JobBuilding
from runtime.storage import open_storage
from runtime.storage.base import JobRecord, NewJob
from runtime.registry import JobSpec
from runtime.storage.workflows import BatchRecord, ChainRecord


def connect(url: str | None = None, *, config: str | None = None) -> "Queue":
    """Open a queue by storage url (`sqlite:///path.db`) or by a supervisor.toml. Inside
    runtime.testing's fake_queue() or eager_queue(), or with a `fake://` or `eager://` url,
    the test helper's queue instead."""
    if (url is None) == (config is None):
        raise TypeError("connect() takes a storage url or config=PATH, one of the two")
    testing = stand_in.active()  # runtime.testing's fake or eager queue, in a test
    if testing is not None:
        return testing.connect(url, config)
    if config is None:
        if stand_in.is_test_url(url):
            return stand_in.open_test_url(url, None)
        return Queue(open_storage(url, role="client"))

    cfg = load_config(config)
    if stand_in.is_test_url(cfg.storage_url):
        return stand_in.open_test_url(cfg.storage_url, config)
    storage = open_storage(cfg.storage_url, role="client", base_dir=cfg.base_dir)
    return Queue(storage, modules=cfg.modules, module_path=cfg.module_path, config_path=cfg.path,
                 pools={name: pool.queues for name, pool in cfg.pools.items()},
                 limiters=cfg.rate_limits)


class Queue(JobBuilding):
    """A connection for enqueueing jobs and reading their state."""

    def __init__(self, storage, modules=(), module_path=(), config_path=None, pools=None,
                 limiters=None, registry=None, clock=time.time):
        """`pools` (pool name -> its queues) says the config is known: then a job is refused
        at enqueue when no pool of the config serves its queue, or when its name is not
        registered by the config's `modules`, since no worker of that config would run it.
        `limiters`: the config's [rate_limits], name -> (starts, period). `registry`: the
        modules' jobs, already collected (the supervisor's), so they are not imported again.
        `clock`: what "now" is (runtime.testing's eager queue passes its fake clock)."""
        self.storage = storage
        self._modules = tuple(modules)
        self._module_path = tuple(module_path)
        self._config_path = config_path
        self._pools = None if pools is None else {name: tuple(queues) for name, queues in pools.items()}
        self._registry: dict[str, JobSpec] | None = registry
        self._checked: dict[tuple[str, str], bytes | None] = {}  # (job, queue) served -> its options
        self._by_name: dict[str, JobSpec] = {}  # names resolved (a module is scanned once, not per job)
        self._limiters = dict(limiters or {})
        self.clock = clock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.storage.close()

    def enqueue(self, job, *args, **kwargs) -> int:
        """Store one job; returns its id. Options are keywords with a leading underscore:
        _queue, _delay (s), _timeout (s), _tries, _backoff, _priority, _unique (key),
        _retry_until (s after now), _max_exceptions, _unique_for (s), _unique_until ("start"),
        _without_overlapping / _overlap_key (a key), _rate_limit ("10/s" or a limiter's
        name), _rate_key (splits the limiter), _tags (labels, merged with the job's own
        tags=). Any other keyword starting with `_` is refused: pass job
        arguments with such names through enqueue_many()."""
        # Every keyword with a leading underscore is an option, so a misspelt one is refused
        # here instead of reaching the job as an argument it does not take.
        options = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("_")}
        return self._store([self._new_job(job, args, kwargs, options, self.clock())])[0]

    def enqueue_many(self, items) -> list[int]:
        """Store many jobs in one transaction: all of them or none.

        Each item is (job, args), (job, args, kwargs) or (job, args, kwargs, options)
        where options is a dict of the same underscore keywords enqueue() takes."""
        with _no_gc_passes():
            return self._store(self._new_jobs(items, self.clock(), "enqueue_many"))

    def _store(self, jobs: list[NewJob]) -> list[int]:
        if not jobs:
            return []
        ids = self.storage.enqueue(jobs)
        # Delayed jobs too: the supervisor then learns when the next one is due.
        self.storage.notify()
        return ids

    def status(self, job_id: int) -> JobRecord:
        """The job's record (state, attempts, error, result, ...); JobNotFound if unknown."""
        record = self.storage.get(int(job_id))
        if record is None:
            raise JobNotFound(f"no job with id {job_id} (it may never have existed, or was pruned)")
        return record

    def cancel(self, job_id: int) -> str:
        """Cancel a job. Returns what it was: "pending" (cancelled: it never runs, delayed or
        not), "running" (its supervisor, told at once on this host or on PostgreSQL, else
        within a heartbeat, kills its worker's process group and the job ends cancelled:
        no retry, no failure hook; a job that finishes first keeps its outcome), or the
        state it had already ended in (left as it is). JobNotFound if unknown."""
        before = self.storage.cancel(int(job_id), self.clock())
        if before is None:
            raise JobNotFound(f"no job with id {job_id} (it may never have existed, or was pruned)")
        if before == "running":
            self.storage.notify()
        return before

    def counts(self) -> dict[str, dict[str, int]]:
        return self.storage.counts(self.clock())

    # -- operators' controls (jobrt pause, resume, restart) ------------------------
    def pause(self, *queues: str) -> list[str]:
        """Stop every supervisor from starting jobs of these queues (running ones finish);
        stored, so it holds across hosts and restarts until resume(). The queues that were
        not paused before."""
        changed = self.storage.pause_queues(list(dict.fromkeys(queues)), self.clock())
        self.storage.notify()  # supervisors on this host read it at once, others within a heartbeat
        return changed

    def resume(self, *queues: str) -> list[str]:
        """Let the supervisors start these queues' jobs again; the queues that were paused."""
        changed = self.storage.resume_queues(list(dict.fromkeys(queues)))
        self.storage.notify()
        return changed

    def restart(self) -> int:
        """Ask every supervisor on this storage to replace its workers, as SIGHUP does (after
        a deploy: Laravel's queue:restart); the request's number."""
        generation = self.storage.request_restart(self.clock())
        self.storage.notify()
        return generation

    # -- batches (runtime.batching) ---------------------------------------------
    def batch(self, items, name: str | None = None, queue: str | None = None, then=None, catch=None,
              finally_=None, allow_failures: bool = False) -> batching.BatchHandle:
        """Store a batch of jobs (items as enqueue_many takes them) in one transaction; returns
        a handle with its `id`. Callbacks are registered jobs (functions or names) that get the
        batch's record (a dict) as their one argument, on `queue` (default: the first member's
        queue, else "default"), each at most once: `then` when every member succeeded, `catch`
        at the first member that failed for good (which, unless allow_failures, cancels the
        pending members), `finally_` when no member is pending or running any more. An empty
        batch runs its callbacks at once."""
        return batching.create(self, items, name, queue, then, catch, finally_, allow_failures)

    def batch_status(self, batch_id: int) -> BatchRecord:
        """The batch's counts, progress, times and failed member ids; BatchNotFound if unknown."""
        return batching.status(self.storage, batch_id)

    def batch_add(self, batch_id: int, items) -> list[int]:
        """Add members to a batch (also from one of its own jobs); their ids. BatchNotFound if
        unknown, BatchFinished once all its members ended."""
        return batching.add(self, batch_id, items)

    def batch_cancel(self, batch_id: int, kill: bool = False) -> bool:
        """Cancel the batch's pending members; running ones finish, or with `kill` their
        supervisors kill them (as cancel() does) and they end cancelled. False if it had
        finished."""
        return batching.cancel(self.storage, batch_id, kill, self.clock())

    def batch_retry(self, batch_id: int) -> int:
        """Run the batch's failed members again; how many were put back."""
        return batching.retry(self.storage, batch_id, self.clock())

    def batches(self, limit: int = 100) -> list[BatchRecord]:
        """The newest batches first."""
        return self.storage.batches(limit)

    # -- chains (runtime.chaining) ----------------------------------------------
    def chain(self, items, catch=None, queue: str | None = None) -> chaining.ChainHandle:
        """Store a chain of jobs (items as enqueue_many takes them, at least one, none unique)
        that run one after another: each step is enqueued when the one before it succeeded,
        its `_delay` counted from then. Returns a handle with its `id` and `first_job_id`.
        `catch`, a registered job (function or name) that gets the chain's record (a dict)
        as its one argument, runs once on `queue` (default: the first step's queue) when a
        step failed for good; the later steps never run."""
        return chaining.create(self, items, catch, queue)

    def chain_status(self, chain_id: int) -> ChainRecord:
        """The chain's state, its steps' job names and the job ids of the steps enqueued so
        far; ChainNotFound if unknown."""
        return chaining.status(self.storage, chain_id)


@contextlib.contextmanager
def _no_gc_passes():
    """No cyclic garbage collection inside: building many jobs allocates tuples by the
    hundred thousand, none in a cycle, and the collector's passes over them took a third
    of enqueue_many's time. Turned back on after, if it was on."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
