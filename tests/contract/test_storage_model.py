"""The SQLite and PostgreSQL backends against the in-memory model, driven by hypothesis.

Every rule runs the same operation on both stores and compares what they
return; after every step each job (get), the counts, the failed list, the
next due time and each schedule's newest tick row must agree. Claims are
remembered, including stale ones, so outcomes exercise the fencing. The clock (`now`) is a number the rules advance.

The real backends keep counts() in counter rows, pending jobs per slot of
available_at (16 s, 4096 s and 1048576 s slots); the clock starts just before a
boundary of all three, delays and ticks cross each kind, and the counts are
compared at several times, so every way a delayed job is counted meets the model.
"""

from __future__ import annotations

import shutil
import tempfile

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test,
)

from runtime.storage import NewJob, Outcome
from runtime.storage.ticks import NewTick
from runtime.storage.workflows import BatchStep, ChainMember, NewBatch
from runtime.storage.memory import MemoryStorage
from runtime.storage.sqlite import SqliteStorage

QUEUES = ["high", "default", "low"]
OWNERS = ["s1", "s2"]
LEASE = 10.0
START = 1048576.0 * 1700 - 20.0  # 20 s before a boundary of 16, 4096 and 1048576 s slots
# Times after `now` at which the counts are compared too: inside and across each slot size.
LATER = [0.5, 16.0, 4096.0, 1048576.0 + 1.0]

HOOKED = b'{"on_failure":"jobs.examples:fail_with_hook_failed","timeout":5}'  # has a failure hook
# (queue, priority, delay, unique key, argument, unique_expires, unique_at_start, options,
#  overlap key);
# keys expire long ago or never, so both stores (each reading the clock) see the same.
new_jobs = st.lists(st.tuples(
    st.sampled_from(QUEUES), st.integers(-1, 2),
    st.sampled_from([0.0, 0.0, 3.0, 12.0, 20.0, 4100.0, 1048576.0 + 30.0]),
    st.sampled_from([None, None, None, "k1", "k2"]), st.integers(0, 9),
    st.sampled_from([None, None, 1.0, 1e12]), st.booleans(),
    st.sampled_from([None, None, HOOKED]),
    st.sampled_from([None, None, None, "o1", "o2"])), min_size=1, max_size=3)

# "failed" first: hypothesis favours early elements, and the failed-jobs verbs need some.
TAGS = [(), ("t1",), (), ("t1", "t2"), ("t2",)]  # by a job's argument: most have none
outcome_kinds = st.sampled_from(["failed", "succeeded", "pending", "pending-undo", "cancelled"])
queue_orders = st.lists(st.sampled_from(QUEUES), unique=True, min_size=1, max_size=3)


def decoded(result):
    """Claimed jobs with their JSON parsed: PostgreSQL writes a failure hook's payload with
    its own spacing and key order, the same document."""
    if isinstance(result, list) and result and hasattr(result[0], "payload"):
        return [job._replace(payload=orjson.loads(job.payload),
                             options=job.options and orjson.loads(job.options)) for job in result]
    return result


def comparable(record):
    """A job record minus what legitimately differs (the wall-clock created_at)."""
    if record is None:
        return None
    out = record.to_dict()
    del out["created_at"]
    return out


class StorageModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="jobrt-model-")
        self.real = self.open_real()
        self.model = MemoryStorage()
        self.now = START
        self.ids: set[int] = set()
        self.claims: list[tuple[str, int, int]] = []  # (owner, job id, attempt), never pruned
        self.claimed_as: dict[int, tuple[str, str]] = {}  # job id -> its (queue, name)

    def open_real(self):
        return SqliteStorage(f"{self.dir}/jobs.db", role="supervisor")

    def teardown(self):
        self.real.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def both(self, verb, *args):
        got, want = getattr(self.real, verb)(*args), getattr(self.model, verb)(*args)
        assert decoded(got) == decoded(want), (verb, args, got, want)
        return got

    def add_jobs(self, specs):
        self.ids.update(self.both("enqueue", self.jobs_of(specs)))

    def jobs_of(self, specs):
        return [NewJob(queue, "jobs.examples:add", orjson.dumps([[n], {}]), self.now + delay,
                       priority=priority, unique_key=key, unique_expires=expires,
                       unique_at_start=at_start, options=options, overlap_key=overlap,
                       tags=TAGS[n % len(TAGS)])
                for queue, priority, delay, key, n, expires, at_start, options, overlap in specs]

    @initialize(specs=new_jobs)
    def start_with_jobs(self, specs):
        self.add_jobs(specs)

    @rule(specs=new_jobs)
    def enqueue(self, specs):
        self.add_jobs(specs)

    # The hot path gets two rules of five, so most examples settle something.
    @rule(owner=st.sampled_from(OWNERS), queues=queue_orders, limit=st.integers(1, 4))
    def claim(self, owner, queues, limit):
        claimed = self.both("exchange", owner, [], queues, limit, self.now + LEASE, self.now)
        self.record_claims(owner, claimed)

    def record_claims(self, owner, claimed):
        self.claims.extend((owner, job.id, job.attempt) for job in claimed)
        self.claimed_as.update((job.id, (job.queue, job.name, job.overlap_key)) for job in claimed)

    @precondition(lambda self: self.claims)
    @rule(queues=queue_orders, limit=st.integers(0, 2), data=st.data())
    def settle(self, queues, limit, data):
        """Settle some current runs, maybe a stale run or a duplicate, then claim."""
        running = sorted((j["owner"], i, j["attempts"]) for i, j in self.model.jobs.items()
                         if j["state"] == "running")
        picked = data.draw(st.lists(st.sampled_from(running), unique=True, min_size=1, max_size=3)
                           if running else st.just([]))
        if data.draw(st.booleans()):  # a stale run, another owner's, or a duplicate
            picked.append(data.draw(st.sampled_from(self.claims)))
        outcomes = []
        # As a supervisor settles: each outcome names its job's queue and name as claimed
        # (SQLite then counts the settle without reading the row), or, as other callers
        # may, not.
        named = data.draw(st.booleans())
        for _owner, job_id, attempt in picked:
            kind = data.draw(outcome_kinds)
            delay = data.draw(st.sampled_from([None, 0.0, 5.0]))
            queue, name, overlap = self.claimed_as[job_id]
            if not named:
                queue = name = None
            # A settle always names the job's gates: the contract asks it of every caller.
            outcomes.append(Outcome(
                job_id, attempt, kind.split("-")[0], self.now, result=b'{"n":1}',
                error=data.draw(st.sampled_from([None, "boom"])), traceback="tb",
                available_at=None if delay is None else self.now + delay,
                undo_attempt=kind == "pending-undo", exception=data.draw(st.booleans()),
                queue=queue, name=name, overlap_key=overlap))
        owner = picked[0][0] if picked else data.draw(st.sampled_from(OWNERS))
        claimed = self.both("exchange", owner, outcomes, queues, limit, self.now + LEASE, self.now)
        self.record_claims(owner, claimed)

    @rule(event=st.sampled_from(["tick", "heartbeat", "died", "rescue"]),
          # LEASE: land on expiry; the others cross slot boundaries of each size
          seconds=st.sampled_from([1.0, 4.0, LEASE, LEASE + 1, 4096.0, 1048576.0]),
          owner=st.sampled_from(OWNERS))
    def time_passes(self, event, seconds, owner):
        """The clock moves, a supervisor renews its leases or dies, leases expire."""
        if event == "tick":
            self.now += seconds
        elif event == "heartbeat":
            self.both("heartbeat", owner, "host", 1, 0.0, {"n": 1}, self.now, self.now + LEASE)
        elif event == "died":
            self.both("rescue", self.now, owner)
        else:
            self.both("rescue", self.now, None)

    @rule(data=st.data())
    def admin(self, data):
        """One of the rarer verbs: retry_failed, forget, cancel, clear, flush_failed, prune."""
        verb = data.draw(st.sampled_from(["retry_failed", "forget", "cancel", "clear",
                                          "flush_failed", "prune", "prune_failed", "pause_queues",
                                          "resume_queues"]))
        some_id = st.sampled_from(sorted(self.ids) or [1])
        if verb == "retry_failed":
            self.both(verb, data.draw(st.none() | st.lists(some_id, max_size=3)), self.now)
        elif verb == "forget":
            self.both(verb, data.draw(some_id))
        elif verb == "cancel":
            self.both(verb, data.draw(some_id), self.now)
        elif verb == "clear":
            self.both(verb, data.draw(st.sampled_from(QUEUES)), self.now)
        elif verb in ("prune", "prune_failed"):  # ties on finished_at are common: the clock moves in steps
            self.both(verb, self.now - data.draw(st.sampled_from([-1.0, 0.0, 4.0])),
                      data.draw(st.integers(0, 3)))
        elif verb == "pause_queues":
            self.both(verb, data.draw(queue_orders), self.now)
        elif verb == "resume_queues":
            self.both(verb, data.draw(queue_orders))
        else:
            self.both(verb)

    @rule(data=st.data())
    def job_set(self, data):
        """count_states, then delete_jobs, over some of the ids made (as `jobrt bench` does)."""
        ids = data.draw(st.lists(st.sampled_from(sorted(self.ids) or [1]), max_size=4))
        self.both("count_states", ids)
        self.both("delete_jobs", ids, self.now)

    @rule(data=st.data(), specs=new_jobs)
    def batch(self, data, specs):
        """Batches: created (maybe empty, maybe allowing failures), added to, cancelled; their
        members end in any order through the other rules."""
        verb = data.draw(st.sampled_from(["create", "create", "add", "cancel"]))
        batch_ids = sorted(self.model.batch_rows) or [1]
        if verb == "create":
            members = self.nested(data, self.jobs_of(specs if data.draw(st.booleans()) else []))
            batch = NewBatch(data.draw(st.sampled_from(QUEUES)), "b", then="cb:then",
                             catch=data.draw(st.sampled_from([None, "cb:catch"])),
                             finally_="cb:finally", allow_failures=data.draw(st.booleans()))
            got = self.both("create_batch", batch, members, self.now)
            self.ids.update(i for i in got[1] if i is not None)
        elif verb == "add":
            got = self.both("batch_add", data.draw(st.sampled_from(batch_ids)),
                            self.nested(data, self.jobs_of(specs)), self.now)
            self.ids.update(i for i in got or [] if i is not None)
        else:
            self.both("batch_cancel", data.draw(st.sampled_from(batch_ids)), self.now,
                      data.draw(st.booleans()))

    @staticmethod
    def steps_of(jobs, delays):
        """Jobs as a chain's steps: no unique keys (a step may not have one), each delay
        relative to the previous step's success."""
        return [job._replace(unique_key=None, unique_expires=None, available_at=delay)
                for job, delay in zip(jobs, delays)]

    def nested(self, data, members):
        """A batch's members, the last ones maybe made a chain (ChainMember)."""
        cut = data.draw(st.integers(0, 3))
        if cut >= len(members) or not data.draw(st.booleans()):
            return members
        steps = self.steps_of(members[cut:], data.draw(
            st.lists(st.sampled_from([0.0, 3.0]), min_size=3, max_size=3)))
        return members[:cut] + [ChainMember(steps, data.draw(st.sampled_from([None, "cb:chain"])),
                                            "low")]

    @rule(data=st.data(), specs=new_jobs, catch=st.sampled_from([None, "cb:catch"]),
          delays=st.lists(st.sampled_from([0.0, 3.0]), min_size=3, max_size=3))
    def chain(self, data, specs, catch, delays):
        """A chain of the drawn jobs, some of its steps maybe made one batch step."""
        steps = self.steps_of(self.jobs_of(specs), delays)
        cut = data.draw(st.integers(0, 3))
        if cut <= len(steps) and data.draw(st.booleans()):
            batch = NewBatch("low", "step", then="cb:then", catch=catch, finally_="cb:finally",
                             allow_failures=data.draw(st.booleans()))
            steps = steps[:cut] + [BatchStep(batch, steps[cut:cut + 2])] + steps[cut + 2:]
        chain_id, first = self.both("create_chain", steps, catch, "low", self.now)
        if first is not None:
            self.ids.add(first)

    @rule(ticks=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 6), st.booleans(),
                                   st.booleans(), st.integers(0, 3)), min_size=1, max_size=3),
          specs=new_jobs)
    def tick(self, ticks, specs):
        """Schedule ticks (some a second time, some missed, some with overlap = skip), their
        jobs the drawn ones (unique keys and gates too)."""
        jobs = self.jobs_of(specs)
        new = [NewTick(schedule, self.now - 10.0 + at, jobs[i % len(jobs)] if with_job else None,
                       skip, missed)
               for i, (schedule, at, with_job, skip, missed) in enumerate(ticks)]
        self.ids.update(r.job_id for r in self.both("enqueue_ticks", new, self.now) if r.job_id)

    @rule(back=st.sampled_from([0.0, 5.0, 1e6]), limit=st.integers(0, 3))
    def prune_ticks(self, back, limit):
        self.both("prune_ticks", self.now - back, limit)

    @invariant()
    def stores_agree(self):
        for job_id in range(1, self.model.last_id + 2):  # with the failure hooks' jobs
            assert comparable(self.real.get(job_id)) == comparable(self.model.get(job_id)), job_id
        for later in [0.0] + LATER:
            at = self.now + later
            assert self.real.counts(at) == self.model.counts(at), later
        assert self.real.pending_by_queue_and_name() == self.model.pending_by_queue_and_name()
        assert [r.id for r in self.real.failed()] == [r.id for r in self.model.failed()]
        for queues in (QUEUES, ["low"]):
            assert self.real.next_due(queues) == self.model.next_due(queues)
        assert self.real.supervisors() == self.model.supervisors()
        for owner in OWNERS:
            assert sorted(self.real.cancel_requests(owner)) == sorted(self.model.cancel_requests(owner))
        assert self.real.oldest_pending(self.now) == self.model.oldest_pending(self.now)
        assert [b.to_dict() for b in self.real.batches()] == \
            [b.to_dict() for b in self.model.batches()]
        for chain_id in range(1, self.model.last_chain + 2):
            got, want = self.real.chain(chain_id), self.model.chain(chain_id)
            assert (got and got.to_dict()) == (want and want.to_dict()), chain_id
        assert self.real.last_ticks(["a", "b"]) == self.model.last_ticks(["a", "b"])
        assert self.real.controls() == self.model.controls()
        assert self.real.paused_queues() == self.model.paused_queues()
        for tag in ("t1", "t2"):
            assert [comparable(r) for r in self.real.jobs_page(tag=tag)] == \
                [comparable(r) for r in self.model.jobs_page(tag=tag)], tag


StorageModel.TestCase.settings = settings(max_examples=50, stateful_step_count=30,
                                          deadline=None)
TestStorageModel = StorageModel.TestCase


class PostgresModel(StorageModel):
    """The same machine on one PostgreSQL database, emptied (ids restarted) per example."""

    url = ""

    def open_real(self):
        from runtime.storage.postgres import PostgresStorage

        store = PostgresStorage(self.url, role="supervisor")
        store.conn.execute("TRUNCATE jobrt_jobs, jobrt_supervisors, jobrt_batches, jobrt_chains, "
                           "jobrt_rate_starts, jobrt_rate_parked, jobrt_schedule_ticks, jobrt_job_tags, "
                           "jobrt_paused_queues, jobrt_restart_requests RESTART IDENTITY")
        return store


def test_postgres_agrees_with_the_model(pg_url):
    machine = type("PostgresModelForTest", (PostgresModel,), {"url": pg_url})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=30, stateful_step_count=30, deadline=None))
