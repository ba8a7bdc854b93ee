"""A supervisor SIGKILLed while it settles members: batch callbacks still run exactly once,
and chains still enqueue each step once, after its jobs are rescued. SQLite and PostgreSQL.

Two supervisors share one storage (leases: 2 s, the victim's 3 s). The survivor serves the queues
`callbacks` and `members` and is never killed, so a callback's run can never be repeated by
a kill (at-least-once would then allow a second run): what is tested is that the dead
supervisor's settles enqueue each callback, or each chain's next step, once. The victim
serves `members` only and has a JOBRT_HOST of its own, so the survivor can take its jobs
back only when their lease runs out, while a victim restarted on its "host" rescues its dead
predecessor's jobs at once. Both ways of rescue are used.

The work comes in waves (4, one per way of dying and of rescue; 30 batches of 1 to 6
members, a quarter of them with one member that fails, half of those allowing failures; or
15 chains of 5 steps). Every other member, and every chain step, is
jobs.chain_examples:waiting_step, which runs until the wave's release file exists and then
notes its job id in <tmp>/runs/steps.jsonl: so the victim's workers are busy with members
of the wave when the test looks, and a note says a run ended. Then, in each wave:

- frozen: the test holds the storage's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL:
  LOCK TABLE jobrt_jobs IN EXCLUSIVE MODE, which lets reads through), releases the wave and
  awaits a note from every member the victim held: their runs ended, and nothing could
  settle them. The victim is SIGKILLed holding all those results (checked under the lock),
  then the lock goes.
- racing: the wave is released and the victim is SIGKILLed as soon as it settled one of
  the members it held: it is in the middle of settling the others (and claiming, and
  enqueueing callbacks or next steps), wherever the kill lands.

Then its jobs are rescued (the restarted victim, or the survivor once the lease expired;
the test awaits that in storage) and the next wave comes. At the end every job in storage is
read (ids 1 up to a sentinel enqueued last) and compared with the batches' counters, the
callbacks' notes, and the chains' records.
"""

from __future__ import annotations

import collections
import contextlib
import random
import sqlite3
import time

import orjson
import pytest

from runtime import JobNotFound, connect
from tests.conftest import END_STATES, REPO, wait_for, write_config

pytestmark = pytest.mark.slow

JOBS = {"modules": ["jobs.examples", "jobs.batch_examples", "jobs.chain_examples"],
        "path": [str(REPO)]}
LEASE = 2.0  # seconds: the survivor's rescue sweep (every lease / 2) takes a dead host's jobs
# The victim's leases, longer: while the test holds storage's lock (a frozen wave) the victim
# cannot renew them, and it fences itself (killing the members the wave awaits) 2 s after
# its last renewal, at the earliest 1 s into the lock.
VICTIM_LEASE = 3.0
VICTIM_HOST = "jobrt-rescue-victim"
VICTIM_WORKERS, SURVIVOR_WORKERS = 3, 2
MEMBER = "jobs.chain_examples:waiting_step"  # (notes directory, index, release file)
FAILING = "jobs.batch_examples:failing_member"
CALLBACKS = {"then": "jobs.batch_examples:then_note", "catch": "jobs.batch_examples:catch_note",
             "finally": "jobs.batch_examples:finally_note"}
CHAIN_CATCH = "jobs.chain_examples:catch_note"
# How the victim dies in a wave, and who rescues its jobs: every pair once, in a seeded order.
KILLS = [("frozen", "restart"), ("frozen", "lease"), ("racing", "restart"), ("racing", "lease")]
BATCHES_PER_WAVE, CHAINS_PER_WAVE, CHAIN_STEPS = 30, 15, 5


def lines(path) -> list[dict]:
    """The complete JSON lines of a notes file (a line being appended is left for later)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [orjson.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]


def idle(q) -> bool:
    """No job waits or runs in any queue."""
    return all(c["pending"] == c["delayed"] == c["running"] == 0 for c in q.counts().values())


def running_on(q, ids, owner: str) -> set:
    """Those of `ids` running (claimed) by supervisor `owner`, as storage says now."""
    held = set()
    for job_id in ids:
        record = q.status(job_id)
        if record.state == "running" and record.owner == owner:
            held.add(job_id)
    return held


class Pair:
    """The survivor and the victim on one storage (see the module's docstring)."""

    def __init__(self, tmp_path, storage: dict, start_supervisor):
        sqlite = storage["url"].startswith("sqlite")
        self.db_path = tmp_path / "jobs.db" if sqlite else None
        self.url = f"sqlite:///{self.db_path}" if sqlite else storage["url"]  # one file for both
        self.runs = tmp_path / "runs"
        self.notes = tmp_path / "notes"
        self.runs.mkdir()
        self.notes.mkdir()
        self.start_supervisor = start_supervisor
        self.env = {"CHAIN_NOTES": str(self.notes)}
        configs = {}
        for side, queues, workers, lease in (
                ("survivor", ["callbacks", "members"], SURVIVOR_WORKERS, LEASE),
                ("victim", ["members"], VICTIM_WORKERS, VICTIM_LEASE)):
            (tmp_path / side).mkdir()
            configs[side] = write_config(
                tmp_path / side, pools={"default": {"workers": workers, "queues": queues}},
                storage={"url": self.url, "lease": lease}, jobs=JOBS)
        self.config, self.victim_config = configs["survivor"], configs["victim"]
        self.survivor = start_supervisor(self.config, env=self.env)
        self.victim = self.owner = None
        self.kills: list[dict] = []

    def start_victim(self, q) -> None:
        self.victim = self.start_supervisor(self.victim_config,
                                            env={**self.env, "JOBRT_HOST": VICTIM_HOST})
        pid = self.victim.proc.pid
        self.owner = wait_for(lambda: next((row.owner for row in q.storage.supervisors()
                                            if row.pid == pid and row.host == VICTIM_HOST), None),
                              30, "the victim's row in the supervisors table")

    @contextlib.contextmanager
    def frozen(self):
        """No supervisor can write while this holds; reads go on."""
        if self.db_path is not None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(self.url) as conn:
                conn.execute("LOCK TABLE jobrt_jobs IN EXCLUSIVE MODE")
                yield
                conn.rollback()

    def ran(self) -> collections.Counter:
        """How many runs of each job ended (from the steps' notes)."""
        return collections.Counter(note["job_id"] for note in lines(self.runs / "steps.jsonl"))

    def noted_since(self, offset: int) -> set:
        path = self.runs / "steps.jsonl"
        if not path.exists():
            return set()
        data = path.read_bytes()[offset:]
        return {orjson.loads(line)["job_id"] for line in data[:data.rfind(b"\n") + 1].splitlines()}

    def kill_during(self, q, wave: list, release, how: str, rescue: str, candidates) -> None:
        """SIGKILL the victim while it settles members of `wave` (job ids, each waiting for
        `release`), `how` = frozen or racing; have its jobs rescued (`rescue` = restart or
        lease); start it again. `candidates()`: every job id that might be running now."""
        held = wait_for(lambda: (h := running_on(q, wave, self.owner)) and len(h) >= VICTIM_WORKERS
                        and h, 60, f"the victim to hold {VICTIM_WORKERS} members of the wave")
        path = self.runs / "steps.jsonl"
        offset = path.stat().st_size if path.exists() else 0
        dead = self.owner
        if how == "frozen":
            with self.frozen():
                release.touch()
                try:
                    wait_for(lambda: held <= self.noted_since(offset), 30,
                             f"the victim's {len(held)} members to end while storage is locked")
                except AssertionError as exc:
                    missing = sorted(held - self.noted_since(offset))
                    raise AssertionError(f"{exc}: no end noted for {missing} "
                                         f"({[q.status(i).state for i in missing]}); the "
                                         f"victim's log:\n{self.victim.output()[-3000:]}") from None
                self.victim.kill()
                # Nothing could settle them: the victim died holding every result.
                assert running_on(q, held, dead) == held
                lost = running_on(q, candidates(), dead)
        else:
            release.touch()
            # Killed as soon as it settled the first of them: it is settling the others.
            wait_for(lambda: running_on(q, held, dead) != held, 30,
                     "the victim to settle a member")
            self.victim.kill()
            lost = running_on(q, candidates(), dead)
        started = time.monotonic()
        if rescue == "restart":
            self.start_victim(q)  # on the dead one's host: it rescues the jobs at once
        wait_for(lambda: not running_on(q, lost, dead), 60,
                 f"the jobs of the dead victim to be rescued ({rescue})")
        if rescue == "lease":
            self.start_victim(q)
        self.kills.append({"how": how, "rescue": rescue, "held": len(held), "lost": len(lost),
                           "unsettled": len(held) if how == "frozen" else None,
                           "rescued in": round(time.monotonic() - started, 2)})

    def run_waves(self, q, rng: random.Random, make_wave, candidates) -> None:
        """One wave per item of KILLS (in a seeded order): make_wave(release file) stores
        its work and returns its job ids (each waiting for the file)."""
        self.start_victim(q)
        for number, (how, rescue) in enumerate(rng.sample(KILLS, len(KILLS))):
            release = self.runs / f"release-{number}"
            wave = make_wave(str(release))
            self.kill_during(q, wave, release, how, rescue, candidates)


def every_job(q) -> list:
    """Every job in storage: ids rise, so all of them are below a job enqueued now."""
    [sentinel] = q.enqueue_many([("jobs.examples:noop", (), {}, {"_queue": "members"})])
    jobs = []
    for job_id in range(1, sentinel):
        try:
            jobs.append(q.status(job_id))
        except JobNotFound:
            pass
    return jobs


def report(pair, seed: int, started: float, what: str) -> tuple:
    ran = pair.ran()
    again = sum(1 for n in ran.values() if n > 1)
    print(f"seed={seed} {what}: {time.monotonic() - started:.1f} s; kills: {pair.kills}; "
          f"{len(ran)} jobs ran, {again} of them more than once")
    return ran, again


@pytest.fixture
def pair(tmp_path, storage, start_supervisor):
    return Pair(tmp_path, storage, start_supervisor)


def test_batch_callbacks_run_once_when_a_supervisor_dies_settling_members(pair, seed, q_of):
    started = time.monotonic()
    rng = random.Random(seed)
    q = q_of(pair)
    plans = {}  # batch id -> (member ids, failing member ids, allow_failures)

    def make_wave(release: str) -> list:
        made = []
        for _ in range(BATCHES_PER_WAVE):
            members = [(MEMBER, (str(pair.runs), len(plans), release), {}, {"_queue": "members"})
                       for _ in range(rng.randint(1, 6))]
            failing = rng.random() < 0.25
            if failing:
                members.insert(rng.randrange(len(members) + 1),
                               (FAILING, ("planned",), {}, {"_queue": "members"}))
            allow = rng.random() < 0.5
            b = q.batch(members, name=str(pair.notes), queue="callbacks", then=CALLBACKS["then"],
                        catch=CALLBACKS["catch"], finally_=CALLBACKS["finally"], allow_failures=allow)
            assert len(b.job_ids) == len(members)
            bad = {i for i, m in zip(b.job_ids, members) if m[0] == FAILING}
            plans[b.id] = (b.job_ids, bad, allow)
            made += [i for i in b.job_ids if i not in bad]  # those that wait, and note their end
        return made

    pair.run_waves(q, rng, make_wave, lambda: [i for ids, _, _ in plans.values() for i in ids])
    wait_for(lambda: len(lines(pair.notes / "finally.jsonl")) >= len(plans) and idle(q), 60,
             f"the finally callbacks of the {len(plans)} batches and every job to end")
    records = {batch_id: q.batch_status(batch_id) for batch_id in plans}
    jobs = every_job(q)
    ran, again = report(pair, seed, started, f"{len(plans)} batches")

    members, callbacks = collections.defaultdict(list), collections.defaultdict(list)
    roles = {name: role for role, name in CALLBACKS.items()}
    for job in jobs:
        if job.batch_id is not None:
            members[int(job.batch_id)].append(job)
        elif job.name in roles:
            callbacks[job.args[0]["id"], roles[job.name]].append(job)
        else:
            assert job.name == "jobs.examples:noop", job  # nothing else was ever stored
    assert sorted(members) == sorted(plans), "a batch lost or gained all its members"
    notes = {role: [n for n in lines(pair.notes / f"{role}.jsonl")] for role in CALLBACKS}
    noted = {role: collections.Counter(n["id"] for n in found) for role, found in notes.items()}
    last = {n["id"]: n for n in notes["finally"]}
    for batch_id, (ids, bad, allow) in plans.items():
        record, mine = records[batch_id], members[batch_id]
        where = f"batch {batch_id} (seed {seed}): {record}"
        # No member lost or added; every one ended; the counters are the members' states.
        assert sorted(j.id for j in mine) == sorted(ids), where
        states = collections.Counter(j.state for j in mine)
        assert set(states) <= set(END_STATES), (where, states)
        assert record.finished_at is not None and (record.pending, record.running) == (0, 0), where
        assert record.total == len(ids) == record.succeeded + record.failed + record.cancelled, where
        assert (record.succeeded, record.failed, record.cancelled) == (
            states["succeeded"], states["failed"], states["cancelled"]), (where, states)
        failed = sorted(j.id for j in mine if j.state == "failed")
        assert record.failed_job_ids == failed == sorted(bad), where  # the one planned failure
        if allow or not bad:
            assert record.cancelled == 0, where
        for job in mine:
            if job.state == "succeeded":
                assert job.name == MEMBER and ran[job.id] >= 1, (where, job)
        # Each callback enqueued exactly once (or never), and it ran once.
        expected = {"then": 0 if bad else 1, "catch": 1 if bad else 0, "finally": 1}
        for role, count in expected.items():
            made = callbacks[batch_id, role]
            assert len(made) == count, (where, role, made)
            assert all(job.state == "succeeded" for job in made), (where, made)
            # A callback job runs on the survivor, which is never killed: once. (Were its own
            # lease ever to run out, on a starved host, at-least-once would allow a rerun.)
            runs = sum(job.attempts for job in made)
            assert count <= noted[role][batch_id] <= runs, (where, role, noted[role][batch_id])
            if runs > count:
                print(f"batch {batch_id}: its {role} callback ran {noted[role][batch_id]} times "
                      f"in {runs} attempts (its own lease ran out)")
        # The record finally got is the batch's end.
        got = last[batch_id]
        assert (got["total"], got["succeeded"], got["failed"], got["cancelled"], got["pending"],
                got["running"]) == (record.total, record.succeeded, record.failed,
                                    record.cancelled, 0, 0), (where, got)
    assert sum(kill["lost"] for kill in pair.kills) > 0, "no kill left jobs to rescue"
    assert again > 0 or pair.db_path is None, "no member ran again after a kill"


def test_chains_enqueue_each_step_once_when_a_supervisor_dies_settling_steps(pair, seed, q_of):
    started = time.monotonic()
    rng = random.Random(seed)
    q = q_of(pair)
    chains = []

    def make_wave(release: str) -> list:
        made = []
        for _ in range(CHAINS_PER_WAVE):
            steps = [(MEMBER, (str(pair.runs), index, release), {}, {"_queue": "members"})
                     for index in range(CHAIN_STEPS)]
            c = q.chain(steps, catch=CHAIN_CATCH, queue="callbacks")
            chains.append(c.id)
            made.append(c.first_job_id)
        return made

    def candidates() -> list:
        return [i for chain_id in chains for i in q.chain_status(chain_id).jobs]

    pair.run_waves(q, rng, make_wave, candidates)
    wait_for(lambda: all(q.chain_status(c).state != "running" for c in chains) and idle(q), 60,
             f"the {len(chains)} chains and every job to end")
    records = {chain_id: q.chain_status(chain_id) for chain_id in chains}
    jobs = every_job(q)
    ran, again = report(pair, seed, started, f"{len(chains)} chains of {CHAIN_STEPS} steps")

    steps = collections.defaultdict(list)
    for job in jobs:
        if job.chain_id is not None:
            steps[job.chain_id].append(job)
        else:
            assert job.name == "jobs.examples:noop", job  # no catch, nothing else
    assert sorted(steps) == sorted(chains)
    for chain_id, record in records.items():
        where = f"chain {chain_id} (seed {seed}): {record}"
        assert record.state == "succeeded" and record.finished_at is not None, where
        # One job per step in storage, the ones the chain names, in order; each ran.
        assert len(record.jobs) == CHAIN_STEPS == len(set(record.jobs)), where
        mine = {job.id: job for job in steps[chain_id]}
        assert sorted(mine) == sorted(record.jobs), (where, sorted(mine))
        for index, job_id in enumerate(record.jobs):
            job = mine[job_id]
            assert (job.state, job.args[1]) == ("succeeded", index), (where, job)
            assert ran[job_id] >= 1, (where, job)
        assert record.jobs == sorted(record.jobs), where  # each made after the one before
    assert lines(pair.notes / "catch.jsonl") == []
    assert sum(kill["lost"] for kill in pair.kills) > 0, "no kill left jobs to rescue"
    assert again > 0 or pair.db_path is None, "no step ran again after a kill"


@pytest.fixture
def q_of():
    opened = []

    def open_for(pair):
        opened.append(connect(config=str(pair.config)))
        return opened[-1]

    yield open_for
    for q in opened:
        q.close()

