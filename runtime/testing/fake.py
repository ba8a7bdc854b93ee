"""The fake queue: it records what code enqueues, runs nothing, and asserts on the record.

    with fake_queue() as q:              connect(...) in the code under test returns q's views
        signup("a@example.com")          -> q.enqueue(send_email, ...): the client's checks,
                                            then stored in q's in-memory store, never run
        q.assert_enqueued(send_email, args=["a@example.com"])

What is recorded is what production would have stored: a duplicate of a live unique job
is no new job, a batch's members and callbacks, a chain's first step (its later steps
wait in the chain: `q.chained`). Laravel's Queue::fake() / Bus::fake().
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson

from runtime.registry import spec_of
from runtime.storage.base import JobRecord
from runtime.storage.workflows import BatchRecord
from runtime.testing.stand_in_queue import StandInQueue, standing_in

SHOWN = 20  # recorded jobs listed in a failed assertion's message


@dataclass(frozen=True)
class EnqueuedJob:
    """One recorded job with its options resolved: the @job's, overridden per enqueue, else
    (timeout, tries, backoff) the defaults of the pool serving its queue. `delay` and
    `retry_until` are seconds after the enqueue, as they were given."""

    id: int
    name: str
    queue: str
    args: list
    kwargs: dict
    delay: float
    priority: int
    timeout: float | None
    tries: int | None
    backoff: object
    retry_until: float | None
    max_exceptions: int | None
    unique_key: str | None
    overlap_key: str | None
    rate_key: str | None
    batch_id: int | None
    chain_id: int | None
    options: dict = field(repr=False)  # as stored with the job

    @classmethod
    def of(cls, record: JobRecord, pool) -> "EnqueuedJob":
        options = record.options
        retry_until = options.get("retry_until")
        backoff = options.get("backoff")
        return cls(record.id, record.name, record.queue, record.args, record.kwargs,
                   record.available_at - record.created_at, record.priority,
                   options.get("timeout") or pool.timeout, options.get("tries") or pool.tries,
                   pool.backoff if backoff is None else backoff,
                   None if retry_until is None else retry_until - record.created_at,
                   options.get("max_exceptions"), record.unique_key, record.overlap_key,
                   record.rate_key, None if record.batch_id is None else int(record.batch_id),
                   record.chain_id, options)

    def describe(self) -> str:
        extra = "".join(f" {key}={value!r}" for key, value in (
            ("delay", self.delay), ("priority", self.priority), ("unique_key", self.unique_key),
            ("batch_id", self.batch_id), ("chain_id", self.chain_id)) if value)
        return (f"#{self.id} {self.name} args={self.args!r} kwargs={self.kwargs!r} "
                f"queue={self.queue!r}{extra}")


@dataclass(frozen=True)
class RecordedBatch:
    """A recorded batch: its `record` (BatchRecord), its member `jobs`, its callbacks' names."""

    id: int
    name: str | None
    queue: str
    jobs: list
    then: str | None
    catch: str | None
    finally_: str | None
    allow_failures: bool
    record: BatchRecord = field(repr=False)

    @property
    def names(self) -> list[str]:
        return [job.name for job in self.jobs]


@dataclass(frozen=True)
class RecordedChain:
    """A recorded chain: its steps' job names (a batch step: {"batch": name, "members": n}),
    each job step's (args, kwargs), its catch callback and queue."""

    id: int
    steps: list
    calls: list
    catch: str | None
    queue: str


def job_name(job) -> str:
    """The registered name of a job function, or the name given."""
    if isinstance(job, str):
        return job
    spec = spec_of(job)
    if spec is None:
        raise TypeError(f"{getattr(job, '__qualname__', job)!r} is not a job: give a function "
                        f"decorated with @runtime.job, or a job's name")
    return spec.name


def _json(value):
    """`value` as the record holds it: through JSON, so a tuple compares equal to a list."""
    return orjson.loads(orjson.dumps(value))


class FakeQueue(StandInQueue):
    """A Queue that records jobs and runs none; `fake_queue()` makes connect() return it."""

    @property
    def jobs(self) -> list[EnqueuedJob]:
        """Every job recorded, in the order enqueued (callbacks and hooks included)."""
        shared = self.shared
        found = [shared.storage.get(job_id) for job_id in sorted(shared.storage.jobs)]
        return [EnqueuedJob.of(record, shared.pool_for(record.queue)) for record in found]

    @property
    def batched(self) -> list[RecordedBatch]:
        """Every batch recorded, oldest first."""
        jobs = self.jobs
        found = []
        for record in reversed(self.shared.storage.batches(limit=1 << 30)):
            members = [job for job in jobs if job.batch_id == record.id]
            found.append(RecordedBatch(record.id, record.name, record.queue, members, record.then,
                                       record.catch, record.finally_, record.allow_failures, record))
        return found

    @property
    def chained(self) -> list[RecordedChain]:
        """Every chain recorded, oldest first."""
        storage = self.shared.storage
        found = []
        for chain_id in sorted(storage.chain_rows):
            record = storage.chain(chain_id)
            calls = [tuple(orjson.loads(step.payload)) if hasattr(step, "payload") else None
                     for step in storage.chain_rows[chain_id]["steps"]]
            found.append(RecordedChain(record.id, record.steps, calls, record.catch, record.queue))
        return found

    # -- assertions --------------------------------------------------------------
    def matching(self, job, args=None, kwargs=None, **options) -> list[EnqueuedJob]:
        """The recorded jobs of `job` (a function or name) whose args, kwargs and the
        EnqueuedJob fields named in `options` (queue=, delay=, priority=, ...) are those given."""
        name = job_name(job)
        unknown = sorted(set(options) - set(EnqueuedJob.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown job field{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                            f"known: {', '.join(EnqueuedJob.__dataclass_fields__)}")
        wanted = {key: _json(value) for key, value in options.items()}
        if args is not None:
            wanted["args"] = _json(list(args))
        if kwargs is not None:
            wanted["kwargs"] = _json(dict(kwargs))
        return [job for job in self.jobs if job.name == name
                and all(getattr(job, key) == value for key, value in wanted.items())]

    def assert_enqueued(self, job, args=None, kwargs=None, times: int | None = None, **options) -> list:
        """At least one such job was enqueued (exactly `times`, if given); returns them."""
        found = self.matching(job, args, kwargs, **options)
        if (len(found) != times) if times is not None else not found:
            expected = "at least once" if times is None else f"{times} time{'s' * (times != 1)}"
            raise AssertionError(f"expected {_wanted(job, args, kwargs, options)} enqueued {expected}, "
                                 f"found {len(found)}\n{self._listing()}")
        return found

    def assert_not_enqueued(self, job, args=None, kwargs=None, **options) -> None:
        found = self.matching(job, args, kwargs, **options)
        if found:
            shown = "\n".join(f"  {job.describe()}" for job in found[:SHOWN])
            raise AssertionError(f"expected no {_wanted(job, args, kwargs, options)} enqueued, "
                                 f"found {len(found)}:\n{shown}")

    def assert_nothing_enqueued(self) -> None:
        if self.jobs or self.chained:
            raise AssertionError(f"expected nothing enqueued\n{self._listing()}")

    def assert_batched(self, predicate=None) -> RecordedBatch:
        """A recorded batch satisfies `predicate` (a function of a RecordedBatch; None: any
        batch); returns the first that does."""
        batches = self.batched
        for batch in batches:
            if predicate is None or predicate(batch):
                return batch
        shown = "\n".join(f"  batch {b.id} name={b.name!r} jobs={b.names} then={b.then} "
                          f"catch={b.catch} finally={b.finally_}" for b in batches[:SHOWN]) or "  (none)"
        expected = "a batch" if predicate is None else "a batch matching the predicate"
        raise AssertionError(f"expected {expected}, found {len(batches)} batch"
                             f"{'es' * (len(batches) != 1)}:\n{shown}")

    def assert_chained(self, steps, catch=None) -> RecordedChain:
        """A chain of exactly these steps (job functions or names; a batch step as its
        {"batch": name, "members": n}) was recorded, with `catch` if given."""
        wanted = [step if isinstance(step, dict) else job_name(step) for step in steps]
        chains = self.chained
        for chain in chains:
            if chain.steps == wanted and (catch is None or chain.catch == job_name(catch)):
                return chain
        shown = "\n".join(f"  chain {c.id} steps={c.steps} catch={c.catch}" for c in chains[:SHOWN]) \
            or "  (none)"
        also = "" if catch is None else f" with catch {job_name(catch)}"
        raise AssertionError(f"expected a chain of {wanted}{also}, found {len(chains)} chain"
                             f"{'s' * (len(chains) != 1)}:\n{shown}")

    def _listing(self) -> str:
        jobs = self.jobs
        if not jobs:
            return "nothing was enqueued"
        lines = [f"  {job.describe()}" for job in jobs[:SHOWN]]
        if len(jobs) > SHOWN:
            lines.append(f"  ... and {len(jobs) - SHOWN} more")
        return f"enqueued ({len(jobs)}):\n" + "\n".join(lines)


def _wanted(job, args, kwargs, options) -> str:
    parts = [job_name(job)]
    if args is not None:
        parts.append(f"args={_json(list(args))!r}")
    if kwargs is not None:
        parts.append(f"kwargs={_json(dict(kwargs))!r}")
    parts += [f"{key}={value!r}" for key, value in options.items()]
    return " ".join(parts)


@contextmanager
def fake_queue(config: str | None = None):
    """A FakeQueue that connect() returns inside the block (by url or config=, whatever the
    code under test names). `config`: a supervisor.toml whose checks its own enqueues get,
    as connect(config=...) would (those of connect(config=X) are X's)."""
    with standing_in(FakeQueue(config)) as queue:
        yield queue
