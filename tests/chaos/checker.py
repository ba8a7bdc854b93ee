"""The chaos scenario and its checker, shared by tests/chaos and benchmarks/chaos.py.

    run_chaos(): supervisors (`jobrt start`) drain jobs.chaos jobs enqueued in chunks
                 while workers and supervisors are SIGKILLed, a supervisor being restarted
                 at once (as systemd would). Paced by the clock (benchmarks/chaos.py):
                 every KILL_EVERY s a random worker, every few s a supervisor, and once
                 CALM_AFTER of the jobs ended only workers. Paced by the runs (the tests,
                 so that nothing depends on how fast the machine is): the worker of each
                 new run with chance WORKER_KILL_CHANCE, and a supervisor as the runs
                 reach each share of the jobs in SUPERVISOR_AT (all below CALM_AFTER)
    check():     compares the runs log (one line per run: `text job_id attempt pid`)
                 with storage's record of every enqueued job -> Report

What must hold (Report.problems() names each breach):
- nothing lost: every enqueued job ended, and a succeeded job ran. A restarted
  supervisor rescues every job its dead predecessor held, so it would also heal a
  job a live supervisor lost track of; the calm end (no supervisor kills) leaves
  such a job running forever, and the run ends after STALL s without progress;
- nothing unexpected: every run belongs to an enqueued job;
- every run is its own claim: no (job, attempt) ran twice, and no run carries an
  attempt storage never handed out; so a job ran at most `attempts` times, and a
  job ran twice only if storage claimed it again (the duplicates come from that set);
- a stale run never wins: a succeeded job's final attempt is a run in the log;
- repeats are bounded by the kills: each worker kill costs at most one extra attempt
  (the job that worker was running; jobs sent ahead to it go back unrun), each
  supervisor kill at most the jobs it held, held_bound(workers, prefetch);
- failures are rare and honest: a job fails only when kills used up its tries, with
  an error saying the worker was killed by SIGKILL;
- a killed supervisor's workers die with it: no orphans. (Here a closed pipe would
  end them too, their jobs being short; test_chaos checks PR_SET_PDEATHSIG itself.)
"""

from __future__ import annotations

import collections
import itertools
import random
import signal
import sqlite3
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import tomli_w

from tests.conftest import END_STATES, REPO, RunningSupervisor, alive, wait_for

KILL_EVERY = 0.05  # seconds between kills
SUPERVISOR_EVERY = (1.0, 3.0)  # seconds between supervisor kills, uniform
TRIES = 20  # per job: a job fails only if kills hit it this many times
SLOW_EVERY = 10  # one job in 10 is jobs.chaos:slow, the rest jobs.chaos:quick
QUICK_PAUSE = 0.002  # seconds after writing its line: short enough to be sent ahead
SLOW_PAUSE = 0.03  # seconds after writing its line: too long to be sent ahead
CHUNK = 250  # jobs per enqueue_many while the chaos runs
READ_AHEAD_MAX = 256  # runtime.supervisor.exchange.Exchange.sync claims at most this many beyond free slots
FAILED_SHARE = 0.01  # at most this share of jobs may use up their TRIES
MAX_JOBS = 50  # recycle workers often, so recycling happens under fire too
CALM_AFTER = 0.75  # share of the jobs ended after which supervisors are no longer killed
STALL = 30.0  # seconds without a job ending before the run gives up (a lost job)
ORPHAN_WAIT = 30.0  # hang guard: a killed supervisor's workers still alive then count as orphans
WORKER_KILL_CHANCE = 0.025  # paced by the runs: the chance a new run's worker is killed
SUPERVISOR_AT = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # paced by the runs: runs / jobs at each kill
POLL = 0.02  # seconds between looks at the runs log when it has nothing new


def held_bound(workers: int, prefetch: int) -> int:
    """The most jobs one supervisor (one pool) holds claimed at once. A claim tops the
    buffer up to the free slots plus a read-ahead of at most READ_AHEAD_MAX, and a
    worker's runs and free slots together are at most `prefetch`: so workers * prefetch
    plus the read-ahead, and as many again for workers being recycled, each of which
    finishes its job and hands the rest back. Results waiting to be written belong to
    jobs counted here; nothing is claimed until they are written."""
    return 2 * workers * prefetch + READ_AHEAD_MAX


def postgres_missing() -> str | None:
    """Why the PostgreSQL backend cannot be used here (not built, no psycopg), or None."""
    from runtime.storage import open_storage

    try:
        open_storage("postgresql://probe@/probe?host=/nonexistent").close()
    except Exception as exc:  # noqa: BLE001 - a usable backend fails to connect here, as it should
        if "not built yet" in str(exc) or "psycopg" in str(exc):
            return str(exc)
    return None


def write_chaos_config(directory: Path, url: str, workers: int, prefetch: int = 2) -> Path:
    """A supervisor.toml for the chaos jobs: one queue, immediate retries, workers
    recycled often, jobs may run as root as in tests/conftest.write_config."""
    path = directory / "supervisor.toml"
    path.write_text(tomli_w.dumps({
        "storage": {"url": url, "lease": 30},
        "jobs": {"modules": ["jobs.chaos"], "path": [str(REPO)]},
        "pools": {"default": {"queues": ["default"], "workers": workers, "prefetch": prefetch,
                              "timeout": 30, "backoff": 0, "grace": 10, "run_as_root": True,
                              "max_jobs": MAX_JOBS}},
    }))
    return path


def chaos_items(log: Path, jobs: int) -> list[tuple]:
    """enqueue_many items: one slow job in SLOW_EVERY, each with TRIES tries."""
    options = {"_tries": TRIES}
    quick = ("jobs.chaos:quick", (str(log), QUICK_PAUSE), {}, options)
    slow = ("jobs.chaos:slow", (str(log), SLOW_PAUSE), {}, options)
    return [slow if index % SLOW_EVERY == 0 else quick for index in range(jobs)]


# -- the scenario ------------------------------------------------------------------------


def workers_of(supervisor: RunningSupervisor) -> list[psutil.Process]:
    """Its workers: its children but the zygote and its spare (runtime.workers.zygote)."""
    try:
        children = psutil.Process(supervisor.proc.pid).children()
    except psutil.NoSuchProcess:
        return []
    workers = []
    for child in children:
        try:
            if child.name() == "jobrt-worker":
                workers.append(child)
        except psutil.NoSuchProcess:
            pass
    return workers


@dataclass
class ChaosRun:
    """What run_chaos did: the ids enqueue returned, and the kills it made."""

    ids: list[int] = field(default_factory=list)
    worker_kills: int = 0
    supervisor_kills: int = 0
    held_at_kills: int = 0  # paced by the runs: jobs each killed supervisor died holding, summed
    kills_holding: int = 0  # paced by the runs: supervisor kills that caught at least one job
    orphans: int = 0  # workers still alive ORPHAN_WAIT s after their supervisor was killed
    drained: bool = False  # every enqueued job ended; False after `timeout` or a STALL
    seconds: float = 0.0
    stop_codes: list[int] = field(default_factory=list)  # exit status of each final SIGTERM stop
    survivors: int = 0  # workers still alive after every supervisor stopped


def run_chaos(q, config: Path, items: list[tuple], supervisors: int = 1, *, start=RunningSupervisor,
              rng: random.Random | None = None, timeout: float = 600.0,
              runs_log: Path | None = None) -> ChaosRun:
    """Drain `items` under kills until every enqueued job ended, `timeout` s passed, or
    no job ended for STALL s. With `runs_log` (the log the items write their runs to)
    the kills are paced by the runs, else by the clock (see the module's docstring).

    `start(config, env)` starts one supervisor (the start_supervisor fixture in tests).
    The supervisors are stopped with SIGTERM at the end; any still running on the
    way out (an exception) are killed."""
    rng = rng or random.Random()
    run = ChaosRun()
    began = progress_at = time.monotonic()
    serials = itertools.count(1)
    names: dict[int, str] = {}  # id(supervisor) -> the application_name its connections carry

    def launch() -> RunningSupervisor:
        name = f"jobrt-chaos-{next(serials)}"
        supervisor = start(config, {"PGAPPNAME": name})
        names[id(supervisor)] = name
        return supervisor

    running = [launch() for _ in range(supervisors)]
    seen: dict[int, psutil.Process] = {}
    chunks = collections.deque(items[i:i + CHUNK] for i in range(0, len(items), CHUNK))
    next_supervisor_kill = time.monotonic() + rng.uniform(*SUPERVISOR_EVERY)
    tail = _RunsTail(runs_log) if runs_log is not None else None
    milestones = collections.deque(int(share * len(items)) for share in SUPERVISOR_AT)
    ended = 0

    def kill_and_restart_a_supervisor():
        index = rng.randrange(len(running))
        victim = running[index]
        if tail is None:  # the benchmark's scenario, as it always was
            run.orphans += _kill_supervisor(victim, seen)
            run.supervisor_kills += 1
        else:  # also count the jobs it died holding
            others = [supervisor for supervisor in running if supervisor is not victim]
            for supervisor in others:  # frozen, they cannot rescue its jobs before they are counted
                supervisor.signal(signal.SIGSTOP)
            try:
                run.orphans += _kill_supervisor(victim, seen)
                run.supervisor_kills += 1
                held = held_by(config, victim, names[id(victim)])
            finally:
                for supervisor in others:
                    supervisor.signal(signal.SIGCONT)
            run.held_at_kills += held
            run.kills_holding += held > 0
        running[index] = launch()

    try:
        tick = 0
        while True:
            if chunks:
                run.ids.extend(q.enqueue_many(chunks.popleft()))
            elif tick % 10 == 0:
                if (now_ended := _ended(q)) > ended:
                    ended, progress_at = now_ended, time.monotonic()
                if ended >= len(run.ids):
                    run.drained = True
                    break
            now = time.monotonic()
            if now - began > timeout or now - progress_at > STALL:
                break
            if tail is not None:
                new = tail.read()
                for started in new:
                    if rng.random() < WORKER_KILL_CHANCE:
                        run.worker_kills += _kill_the_worker(started.pid, running, seen)
                if milestones and tail.count >= milestones[0]:
                    milestones.popleft()
                    kill_and_restart_a_supervisor()
                    progress_at = time.monotonic()  # the restart is no stall of the others
                if not new:
                    time.sleep(POLL)  # nothing new in the log yet: look again shortly
            else:
                calm = not chunks and ended >= CALM_AFTER * len(items)
                if not calm and now >= next_supervisor_kill:
                    kill_and_restart_a_supervisor()
                    next_supervisor_kill = time.monotonic() + rng.uniform(*SUPERVISOR_EVERY)
                else:
                    run.worker_kills += _kill_a_worker(running, seen, rng)
                time.sleep(KILL_EVERY)  # the kill interval is the scenario, not a synchronisation
            tick += 1
        run.seconds = time.monotonic() - began
        for supervisor in running:
            seen.update((w.pid, w) for w in workers_of(supervisor))
        run.stop_codes = [supervisor.stop() for supervisor in running]
        run.survivors = sum(alive(worker) for worker in seen.values())
    finally:
        for supervisor in running:
            supervisor.discard()
    return run


class _RunsTail:
    """The runs appended to a runs log since the last read (whole lines only)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.count = path, 0, 0

    def read(self) -> list[Run]:
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                data = log.read()
        except FileNotFoundError:
            return []
        whole = data[:data.rfind(b"\n") + 1]
        self.offset += len(whole)
        runs = [_parse(line, self.path, self.count + number)
                for number, line in enumerate(whole.decode().splitlines(), 1)]
        self.count += len(runs)
        return runs


def held_by(config: Path, supervisor: RunningSupervisor, application_name: str) -> int:
    """How many jobs storage shows running under a killed `supervisor` (its pid is in the
    owner), with any other supervisor stopped: exactly the jobs it died holding. PostgreSQL
    may still complete a COMMIT it sent just before dying: counted once its server
    processes (by `application_name`) are gone."""
    url = tomllib.loads(config.read_text())["storage"]["url"]
    pattern = f"%:{supervisor.proc.pid}:%"
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(config.parent / url.removeprefix("sqlite:///"))  # relative to the config
        try:
            return conn.execute("SELECT count(*) FROM jobs WHERE state = 'running' AND owner LIKE ?",
                                (pattern,)).fetchone()[0]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = %s",
                                      (application_name,)).fetchone()[0],
                 what=f"the server processes of killed supervisor {application_name} to end")
        return conn.execute("SELECT count(*) FROM jobrt_jobs WHERE state = 'running' AND owner LIKE %s",
                            (pattern,)).fetchone()[0]


def _ended(q) -> int:
    return sum(n for counts in q.counts().values() for state, n in counts.items() if state in END_STATES)


def _kill_a_worker(running: list[RunningSupervisor], seen: dict, rng: random.Random) -> int:
    workers = [w for supervisor in running for w in workers_of(supervisor)]
    seen.update((w.pid, w) for w in workers)
    workers = [w for w in workers if alive(w)]
    if not workers:
        return 0
    try:
        rng.choice(workers).kill()  # psutil checks the pid still names the same process
    except psutil.NoSuchProcess:
        return 0
    return 1


def _kill_the_worker(pid: int, running: list[RunningSupervisor], seen: dict) -> int:
    """SIGKILL the worker `pid` if it is still a worker of a running supervisor."""
    for supervisor in running:
        for worker in workers_of(supervisor):
            seen[worker.pid] = worker
            if worker.pid == pid:
                try:
                    worker.kill()
                except psutil.NoSuchProcess:
                    return 0
                return 1
    return 0


def _kill_supervisor(supervisor: RunningSupervisor, seen: dict) -> int:
    """SIGKILL a supervisor; returns how many of its workers outlived it by ORPHAN_WAIT s
    (and kills those, so the run can go on)."""
    workers = workers_of(supervisor)
    seen.update((w.pid, w) for w in workers)
    supervisor.kill()
    deadline = time.monotonic() + ORPHAN_WAIT
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the kernel to end them
    orphans = [w for w in workers if alive(w)]
    for orphan in orphans:
        try:
            orphan.kill()
        except psutil.NoSuchProcess:
            pass
    return len(orphans)


# -- the checker ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One line of the runs log: one run of one job."""

    text: str
    job_id: int
    attempt: int
    pid: int


def read_runs(log: Path) -> list[Run]:
    """Every run in the log. A torn or foreign line raises: O_APPEND writes of one short
    line are atomic, so one would mean the log cannot be trusted."""
    if not log.exists():
        return []
    return [_parse(line, log, number) for number, line in enumerate(log.read_text().splitlines(), 1)]


def _parse(line: str, log: Path, number: int) -> Run:
    try:
        text, job_id, attempt, pid = line.split()
        return Run(text, int(job_id), int(attempt), int(pid))
    except ValueError:
        raise ValueError(f"{log}:{number}: not a run line: {line!r}") from None


@dataclass
class Report:
    jobs: int
    runs: int
    worker_kills: int
    supervisor_kills: int
    orphans: int
    succeeded: int
    failed: dict[int, str]  # job id -> error
    lost: list[int]  # not in an end state (or unknown to storage), or succeeded without a run
    unexpected: list[int]  # ran, never enqueued
    duplicated: int  # runs beyond the first, summed over jobs
    repeated_claims: list[tuple[int, int]]  # (job id, attempt) that ran more than once
    unclaimed_runs: list[int]  # jobs with a run whose attempt storage never handed out
    unrun_successes: list[int]  # succeeded, but no run of the attempt that succeeded
    extra_attempts: int  # sum of (attempts - 1): every claim beyond the first
    attempts_bound: int  # worker kills + supervisor kills * held_bound

    def figures(self) -> dict:
        return {"jobs": self.jobs, "runs": self.runs, "worker_kills": self.worker_kills,
                "supervisor_kills": self.supervisor_kills, "lost": len(self.lost),
                "duplicated": self.duplicated, "unexpected": len(self.unexpected),
                "succeeded": self.succeeded, "failed": len(self.failed),
                "extra_attempts": self.extra_attempts, "attempts_bound": self.attempts_bound,
                "orphans": self.orphans}

    def problems(self) -> list[str]:
        """Every invariant this run broke, in words; empty when all held."""
        found = []

        def note(what, items):
            if items:
                found.append(f"{what}: {len(items)} (first: {sorted(items)[:10]})")

        note("lost jobs", self.lost)
        note("unexpected runs (job never enqueued)", self.unexpected)
        note("one claim ran twice (job, attempt)", self.repeated_claims)
        note("runs with an attempt storage never handed out", self.unclaimed_runs)
        note("succeeded jobs whose succeeding attempt never ran", self.unrun_successes)
        note("failed jobs whose error is not a SIGKILL of their worker",
             [i for i, error in self.failed.items() if "killed by SIGKILL" not in (error or "")])
        if len(self.failed) > max(1, self.jobs * FAILED_SHARE):
            found.append(f"{len(self.failed)} of {self.jobs} jobs failed: more than "
                         f"{FAILED_SHARE:.0%} used up their {TRIES} tries")
        if self.extra_attempts > self.attempts_bound:
            found.append(f"{self.extra_attempts} extra attempts, more than the kills can explain "
                         f"({self.attempts_bound})")
        if self.orphans:
            found.append(f"{self.orphans} workers outlived their killed supervisor by {ORPHAN_WAIT} s")
        return found


def check(ids: list[int], runs: list[Run], records: dict, chaos: ChaosRun, held: int) -> Report:
    """Compare the runs with storage. `records` maps each enqueued id to its JobRecord
    (None if storage does not know it); `held` is held_bound() of one supervisor."""
    enqueued = set(ids)
    per_job: dict[int, list[int]] = collections.defaultdict(list)
    for run in runs:
        per_job[run.job_id].append(run.attempt)
    lost, unclaimed, unrun, failed = [], [], [], {}
    succeeded = extra = 0
    for job_id in ids:
        record = records.get(job_id)
        attempts = per_job.get(job_id, [])
        if record is None or record.state not in END_STATES or (record.state == "succeeded" and not attempts):
            lost.append(job_id)
            if record is None:
                continue
        extra += max(0, record.attempts - 1)
        if any(a < 1 or a > record.attempts for a in attempts):
            unclaimed.append(job_id)
        if record.state == "succeeded":
            succeeded += 1
            if attempts and record.attempts not in attempts:
                unrun.append(job_id)
        elif record.state == "failed":
            failed[job_id] = record.error
    claims = collections.Counter((run.job_id, run.attempt) for run in runs)
    return Report(
        jobs=len(ids), runs=len(runs), worker_kills=chaos.worker_kills,
        supervisor_kills=chaos.supervisor_kills, orphans=chaos.orphans, succeeded=succeeded,
        failed=failed, lost=lost, unexpected=sorted(set(per_job) - enqueued),
        duplicated=sum(len(a) - 1 for a in per_job.values() if a),
        repeated_claims=sorted(claim for claim, n in claims.items() if n > 1),
        unclaimed_runs=unclaimed, unrun_successes=unrun, extra_attempts=extra,
        attempts_bound=chaos.worker_kills + chaos.supervisor_kills * held)


def records_of(storage, ids: list[int]) -> dict:
    return {job_id: storage.get(job_id) for job_id in ids}
