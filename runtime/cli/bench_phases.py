"""What `jobrt bench` measures, phase by phase, on a running deployment (runtime.cli.bench
checks that one is live and prints the figures).

    pickup:   one no-op job at a time on an idle pool: enqueue returned -> the job started
    one:      jobs enqueued one by one (a transaction, a durable commit, each)
    bulk:     enqueue_many in chunks, every job due at one moment (`due`) after the last chunk
    drain:    from `due` until every bulk job ended, seen by polling count_states
    cleanup:  delete_jobs of every id it made (also when interrupted), running ones once ended

Every id the bench made is in `Bench.made` as soon as its enqueue returned, and an
interruption (SIGINT, SIGTERM) only sets a flag that the phases check between calls, so an
enqueue is never cut short with its ids unknown: cleanup removes exactly the bench's jobs.
"""

from __future__ import annotations

import signal
import sys
import time

from runtime.bench_jobs import NOOP
from runtime.cli.admin import CommandError
from runtime.storage.base import ENDED, PENDING, RUNNING
from runtime.storage.job_sets import JOB_SET_CHUNK

CHUNK = 1000  # jobs per enqueue_many call of the bulk phase
ONE_BY_ONE_MAX = 500  # jobs the one-by-one phase enqueues at most: each is a durable commit
STALL_S = 60.0  # seconds without a bench job ending before the bench gives up
CLEANUP_WAIT_S = 30.0  # seconds cleanup waits for running bench jobs to end
IDLE_GAP_S = 0.005  # between pickup probes, so that the pool is idle again
OPEN = {PENDING, RUNNING}


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop measuring, clean up."""


class Stalled(Exception):
    """No bench job ended for STALL_S seconds."""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Progress:
    """Progress on stderr: a line per phase; on a terminal, a counter updated in place."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.live = stream.isatty()
        self.shown = 0.0

    def phase(self, text: str) -> None:
        self._end_line()
        self.stream.write(f"jobrt bench: {text}\n")
        self.stream.flush()

    def count(self, what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self.live and (now - self.shown >= 0.1 or done == total):
            self.shown = now
            self.stream.write(f"\r  {what}: {done}/{total}\x1b[K")
            self.stream.flush()

    def _end_line(self) -> None:
        if self.live and self.shown:
            self.stream.write("\n")
            self.shown = 0.0


class Bench:
    """The phases over one client `queue` (runtime.client.Queue) and its storage."""

    def __init__(self, queue, name: str, progress: Progress):
        self.queue = queue
        self.storage = queue.storage
        self.name = name  # the queue the bench's jobs go to
        self.progress = progress
        self.made: list[int] = []  # every id enqueued, in order
        self.stop = False
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        """A warning: shown now, and kept for the report (its JSON's "warnings")."""
        self.warnings.append(text)
        self.progress.phase("warning: " + text)

    # -- interruption --------------------------------------------------------------
    def catch_signals(self) -> dict:
        """SIGINT and SIGTERM set a flag; returns the handlers they had."""
        def flag(_signum, _frame):
            self.stop = True
        return {signum: signal.signal(signum, flag) for signum in (signal.SIGINT, signal.SIGTERM)}

    def check(self) -> None:
        if self.stop:
            raise Interrupted()

    # -- phases ----------------------------------------------------------------------
    def pickup(self, probes: int) -> dict:
        """`probes` jobs one at a time, each once the one before ended: ms from the enqueue
        returning to the job's start (its result: the worker's clock when it began)."""
        self.progress.phase(f"pickup latency: {probes} jobs, one at a time on the idle pool")
        latencies = []
        for n in range(probes):
            self.check()
            job_id = self.queue.enqueue(NOOP, _queue=self.name)
            returned = time.time()
            self.made.append(job_id)
            record = self._wait_one(job_id)
            if record.state != "succeeded":
                raise CommandError(f"bench: its job {job_id} {record.state}: {record.error}")
            latencies.append((record.result - returned) * 1000)
            self.progress.count("pickup", n + 1, probes)
            time.sleep(IDLE_GAP_S)
        return {"pickup_p50_ms": round(percentile(latencies, 0.5), 3),
                "pickup_p99_ms": round(percentile(latencies, 0.99), 3), "probes": probes}

    def one_by_one(self, jobs: int) -> dict:
        """`jobs` enqueue() calls; then a chunk by enqueue_many, whose rate sets how long the
        bulk phase gives itself; waits for all of them to end."""
        self.progress.phase(f"enqueue one by one: {jobs} jobs")
        first = len(self.made)
        started = time.perf_counter()
        for n in range(jobs):
            self.check()
            self.made.append(self.queue.enqueue(NOOP, _queue=self.name))
            self.progress.count("enqueued", n + 1, jobs)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        self._enqueue_chunk(min(CHUNK, jobs), 0.0)
        self.chunk_rate = min(CHUNK, jobs) / (time.perf_counter() - started)
        self._wait_all(self.made[first:], "ended")
        return {"enqueue_one_jobs_per_s": round(jobs / seconds), "enqueue_one_jobs": jobs}

    def bulk_and_drain(self, jobs: int) -> dict:
        """`jobs` jobs by enqueue_many in chunks, all due at one moment after the last chunk
        (a guess from the rate one_by_one measured, with room to spare); then the drain,
        from that moment until every one of them ended."""
        allowance = 0.5 + 1.5 * jobs / self.chunk_rate
        self.progress.phase(f"enqueue bulk: {jobs} jobs by enqueue_many of {CHUNK}, due in "
                            f"{allowance:.1f} s")
        due = time.time() + allowance
        first = len(self.made)
        started = time.perf_counter()
        for done in range(0, jobs, CHUNK):
            self.check()
            self._enqueue_chunk(min(CHUNK, jobs - done), max(0.0, due - time.time()))
            self.progress.count("enqueued", min(done + CHUNK, jobs), jobs)
        seconds = time.perf_counter() - started
        late = time.time() - due
        if late > 0:
            self.warn(f"the bulk enqueue ended {late:.2f} s after its jobs were due: the drain "
                      f"overlapped it, and its figure is low")
        self.progress.phase(f"drain: {jobs} jobs")
        while time.time() < due:
            self.check()
            time.sleep(min(0.05, max(0.0, due - time.time())))
        drained = self._wait_all(self.made[first:], "ended") - due
        return {"enqueue_bulk_jobs_per_s": round(jobs / seconds), "jobs": jobs,
                "drain_jobs_per_s": round(jobs / drained), "drain_seconds": round(drained, 3)}

    def _enqueue_chunk(self, jobs: int, delay: float) -> None:
        self.made.extend(self.queue.enqueue_many([(NOOP, (), {}, {"_queue": self.name, "_delay": delay})]
                                                 * jobs))

    # -- waiting ------------------------------------------------------------------------
    def _wait_one(self, job_id: int):
        deadline = time.monotonic() + STALL_S
        while True:
            record = self.queue.status(job_id)
            if record.state in ENDED:
                return record
            self.check()
            if time.monotonic() > deadline:
                raise Stalled()
            time.sleep(0.001)

    def _wait_all(self, ids: list[int], what: str) -> float:
        """Poll until every job of `ids` ended; returns when that was seen (epoch seconds).
        The last id is claimed last, so it alone is watched closely while it has not ended;
        all of them (count_states: a probe per id) once a second meanwhile, then until
        every one ended, at a pace that keeps the reads a small load beside the drain."""
        ended, last_change, next_full = -1, time.monotonic(), 0.0
        while True:
            self.check()
            asked = time.perf_counter()
            last_open = bool(set(self.storage.count_states(ids[-1:])) & OPEN)
            if not last_open or time.monotonic() >= next_full:
                states = self._states(ids)
                done = len(ids) - states.get(PENDING, 0) - states.get(RUNNING, 0)  # or gone
                if done == len(ids):
                    return time.time()
                next_full = time.monotonic() + 1.0
                self.progress.count(what, done, len(ids))
                if done != ended:
                    ended, last_change = done, time.monotonic()
                elif time.monotonic() - last_change > STALL_S:
                    raise Stalled()
            time.sleep(min(0.2, max(0.002, 4 * (time.perf_counter() - asked))))

    def _states(self, ids: list[int]) -> dict[str, int]:
        total: dict[str, int] = {}
        for at in range(0, len(ids), JOB_SET_CHUNK):
            for state, n in self.storage.count_states(ids[at:at + JOB_SET_CHUNK]).items():
                total[state] = total.get(state, 0) + n
        return total

    # -- cleanup --------------------------------------------------------------------------
    def cleanup(self) -> int:
        """Delete every job the bench made; those running are deleted once they ended
        (waiting CLEANUP_WAIT_S at most). Returns how many are left (0: all gone)."""
        deadline = time.monotonic() + CLEANUP_WAIT_S
        left = list(self.made)
        while left:
            for at in range(0, len(left), JOB_SET_CHUNK):
                self.storage.delete_jobs(left[at:at + JOB_SET_CHUNK])
            remaining = self._states(left)
            if not remaining or time.monotonic() > deadline:
                return sum(remaining.values())
            left = [i for i in left if self.storage.count_states([i])]
            time.sleep(0.05)
        return 0
