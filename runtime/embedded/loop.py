"""The embedded Pool's engine: the supervisor's WorkerPool, driven by a loop on one thread.

    script threads --inbox (deque + wake-up pipe)--> PoolLoop thread --RUN/DONE--> workers
          ^                                               |
          +-------- futures, map queues <---- results ----+

Calls arrive in Batches (one submit, or one chunk of a map). A batch becomes a
job for the WorkerPool, which sends it to a worker, enforces the timeout and
recycles workers exactly as it does in the supervisor. When a batch of
several calls hangs or crashes its worker, its calls are queued again one by
one (not counted as tries) so only the culprit fails. A call that raises (or
calls release()) is retried alone while it has tries left. With a RunRecord,
calls that succeeded in an earlier run are answered from it without running.
"""

from __future__ import annotations

import heapq
import logging
import os
import pickle
import secrets
import threading
import time
from collections import deque

import orjson

from runtime.embedded import batches
from runtime.embedded.batches import Batch, BatchJob
from runtime.embedded.progress import ProgressLine
from runtime.embedded.record import call_key
from runtime.errors import JobFailed, JobrtError, PayloadError
from runtime.options import NO_OPTIONS, JobOptions
from runtime.storage.base import PENDING, SUCCEEDED
from runtime.workers import process, retry_rules, sandbox
from runtime.workers.pool import WorkerPool
from runtime.workers.selector import EventLoop
from runtime.workers.stats import Stats

log = logging.getLogger("jobrt")
# What the workers' machinery logs (a worker killed, a batch timed out) reaches the script's
# logging when it configures some; otherwise JobFailed says it all, and nothing is printed.
pool_log = logging.getLogger("jobrt.pool")
pool_log.addHandler(logging.NullHandler())

STOP_GRACE = 5.0  # seconds idle workers get to exit when the pool closes
LEFTOVER_WAIT = 5.0  # seconds for what calls left running to be dead once killed: "no orphans" means dead


class PoolLoop(EventLoop):
    def __init__(self, config, record=None, progress: bool = False):
        self.progress = ProgressLine() if progress else None
        super().__init__(relay=None)  # what calls print goes straight to the script's stdout and stderr
        self.config = config
        self.registry: dict = {}  # name -> PoolFunction; workers inherit it when they fork
        self.stats = Stats()
        # Left in the environment of everything a call starts, so what escaped its worker's
        # process group (setsid) is still found and killed when the pool ends.
        self.owner = f"pool:{os.getpid()}:{secrets.token_hex(4)}"
        self.pool = WorkerPool(config, self.registry, self, self.stats, owner=self.owner,
                               logger=pool_log)
        self.pool.results_are_json = False  # a batch's answers are pickled (embedded.batches)
        self.record = record
        self.inbox: deque = deque()
        self.woken = False
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.watch_call(self.wake_r, self._on_wake)
        self.waiting: deque = deque()  # (job, batch, offsets) not yet handed to the WorkerPool
        self.runs: dict[int, tuple] = {}  # job id -> (job, batch, offsets), handed over
        self.retries: list = []  # heap of (due, job id, job, batch, offsets)
        self.next_id = 1
        self.per_call: dict[str, float] = {}  # function name -> seconds a call takes, on average
        self.closing = False
        self.counts = {"succeeded": 0, "failed": 0, "skipped": 0, "retried": 0}
        self.total: int | None = 0
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="jobrt-pool", daemon=True)
        self.ending = threading.Lock()  # no batch slips into the inbox after the loop's last look
        self.ended = False

    # -- the script's side (any thread) ----------------------------------------
    def post(self, message: tuple) -> None:
        with self.ending:
            if self.ended:
                if message[0] == "batch":
                    raise JobrtError("the pool has shut down; this call was not run")
                return
            self.inbox.append(message)
        if not self.woken:
            self.woken = True
            try:
                os.write(self.wake_w, b"!")
            except (BlockingIOError, OSError):
                pass  # a wake-up is already pending, or the loop has ended

    def _on_wake(self, _mask) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    # -- the loop ------------------------------------------------------------------
    def run(self) -> None:
        pool = self.pool
        try:
            while not pool.done:
                self._turn()
        except BaseException as exc:  # noqa: BLE001 - a bug here must not strand the script
            self.failure = exc
            log.exception("pool: the loop failed; killing its workers")
            pool.kill_all("the pool's loop failed")
            self._abort_all(f"the pool failed ({exc!r}); this call did not finish")
            pool.wait_all_dead()
        finally:
            self.finish()

    def _turn(self) -> None:
        pool = self.pool
        now = time.monotonic()
        nearest = min(pool.next_timer(now), self.retries[0][0] if self.retries else float("inf"),
                      self.record.due() if self.record else float("inf"),
                      self.progress.due() if self.progress and self.runs else float("inf"))
        self.wait(None if nearest == float("inf") else max(0.0, nearest - now))
        self.woken = False  # before draining: a message posted after this wakes us again
        inbox = self.inbox
        while inbox:
            self._handle(inbox.popleft())
        now = time.monotonic()
        pool.enforce_deadlines(now)
        self._settle(pool.take_outcomes())
        while self.retries and self.retries[0][0] <= now:
            _, _, job, batch, offsets = heapq.heappop(self.retries)
            self.waiting.appendleft((job, batch, offsets))
        pool.manage(now)  # first: a worker it forks can take a job this very turn
        self._feed()
        pool.dispatch(now)
        if self.record:
            self.record.flush(now)
        if self.progress:
            self._draw(now)
        if self.closing and not pool.stopping and not (self.waiting or self.runs or self.retries):
            pool.begin_stop(now, STOP_GRACE, "the pool closed and its workers did not stop in time")

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "batch":
            self._accept(message[1])
        elif kind == "function":  # workers forked before it was defined do not have it
            self.pool.retire_all("new function")
        elif kind == "cancel":
            sink = message[1]
            self._unqueue(lambda batch: batch.sink is not sink)
        elif kind == "drop":  # shutdown(cancel_futures=True): what has not started never will
            # a batch with calls running (split after a crash) keeps its others, to end as one
            running = {entry[1] for entry in self.runs.values()}
            for batch in self._unqueue(lambda batch: batch in running):
                batch.sink.abort(message[1])
        elif kind == "total":
            self.total = None if message[1] is None or self.total is None else self.total + message[1]
        elif kind == "stop":
            self.closing = True
        elif kind == "kill":
            self.closing = True
            self.pool.kill_all(message[1])
            self._abort_all(message[1])

    def _feed(self) -> None:
        """Hand waiting jobs to the WorkerPool as its workers can take them."""
        waiting = self.waiting
        if not waiting:
            return
        want = self.pool.wanted(1)
        while want > 0 and waiting:
            job, batch, offsets = waiting.popleft()
            if batch.sink.start():
                self.runs[job.id] = (job, batch, offsets)
                self.pool.give((job,))
                want -= 1

    # -- batches in ------------------------------------------------------------------
    def _accept(self, batch: Batch) -> None:
        offsets = range(len(batch.items))
        if self.record is not None:
            offsets = self._skip_recorded(batch)
        if offsets:
            self.waiting.extend(self._jobs(batch, offsets, 1))
        else:
            batch.per_call = 0.0  # answered from the record: a map may send bigger chunks
            self._deliver(batch)

    def _skip_recorded(self, batch: Batch) -> list[int]:
        record = self.record
        batch.keys, batch.calls = [], []
        todo = []
        for offset, item in enumerate(batch.items):
            try:
                typed, call = call_key(batch.mode, item)
            except PayloadError as exc:
                batch.keys.append(None)
                batch.calls.append(None)
                self._failed(batch, offset, retry_rules.ERROR, str(exc), None, None, 0)
                continue
            batch.keys.append(record.key(batch.task, typed))
            batch.calls.append(call)
            todo.append(offset)
        found = record.lookup([batch.keys[o] for o in todo])
        if not found:
            return todo
        rest = []
        for offset in todo:
            result = found.get(batch.keys[offset])
            if result is None:
                rest.append(offset)
            else:
                batch.values[offset] = orjson.loads(result)
                batch.remaining -= 1
                self.counts["skipped"] += 1
        return rest

    def _jobs(self, batch: Batch, offsets, attempt: int) -> list[tuple]:
        """Jobs for these calls of a batch; calls whose arguments cannot be sent fail here."""
        items = batch.items if len(offsets) == len(batch.items) else [batch.items[o] for o in offsets]
        try:
            payload = pickle.dumps((batch.mode, items), batches.PROTOCOL)
            error = None
        except Exception as exc:  # noqa: BLE001 - a lock, a generator, a socket...
            payload, error = None, f"its arguments could not be pickled: {type(exc).__name__}: {exc}"
        if payload is not None and len(payload) > batches.MAX_BODY:
            payload = None
            error = (f"its arguments are more than {batches.MAX_BODY >> 20} MiB pickled, more than "
                     "a worker may be sent: pass a file path instead of the data")
        if payload is None:
            if len(offsets) > 1:
                return [job for offset in offsets for job in self._jobs(batch, [offset], attempt)]
            self._failed(batch, offsets[0], retry_rules.ERROR, error, None, None, attempt)
            self._deliver(batch)
            return []
        job = BatchJob(self.next_id, batch.name, payload, attempt, self._options(batch.name, len(items)),
                       len(items))
        self.next_id += 1
        return [(job, batch, offsets)]

    def _options(self, name: str, calls: int) -> JobOptions:
        """A batch of several calls gets the timeout plus what its other calls are expected to
        take (twice their measured average), so calls that are each well within the timeout
        are never killed for their number."""
        timeout = self.config.timeout
        if calls == 1 or timeout == float("inf"):
            return NO_OPTIONS
        average = self.per_call.get(name)
        each = timeout if average is None else min(timeout, 2 * average + 0.001)
        return JobOptions(timeout=timeout + (calls - 1) * each)

    # -- answers out -----------------------------------------------------------------
    def _settle(self, settled: list) -> None:
        touched = set()
        for outcome in settled:
            entry = self.runs.pop(outcome.job_id, None)
            if entry is None:
                continue
            job, batch, offsets = entry
            touched.add(batch)
            if outcome.state == SUCCEEDED:
                try:
                    values, failures, seconds = batches.decode(outcome.result)
                except Exception as exc:  # noqa: BLE001 - a value whose class this process lacks
                    outcome = outcome._replace(state="undecodable", error=(
                        f"its result could not be unpickled here: {type(exc).__name__}: {exc}"))
                else:
                    self._answered(batch, offsets, values, failures, seconds, job.attempt)
                    continue
            if outcome.undo_attempt:
                continue  # returned unstarted while stopping: nothing more runs
            if len(offsets) > 1:  # find the culprit: each call alone, not counted as a try
                self.waiting.extendleft(reversed([
                    entry for offset in offsets for entry in self._jobs(batch, [offset], job.attempt)]))
            elif outcome.state == PENDING:
                self._retry(job, batch, offsets, outcome.available_at - time.time())
            else:
                self._failed(batch, offsets[0], outcome.reason or retry_rules.ERROR, outcome.error, None,
                             None, job.attempt)
        for batch in touched:
            self._deliver(batch)

    def _answered(self, batch: Batch, offsets, values: list, failures: dict, seconds: float,
                  attempt: int) -> None:
        whole = len(offsets) == len(batch.items)
        if whole:
            batch.per_call = seconds / len(offsets)
            average = self.per_call.get(batch.name)
            self.per_call[batch.name] = batch.per_call if average is None else \
                average + 0.2 * (batch.per_call - average)
        if whole and not failures and batch.keys is None:
            batch.values = values
            batch.remaining = 0
            self.counts["succeeded"] += len(values)
            return
        record = self.record
        for index, offset in enumerate(offsets):
            failure = failures.get(index)
            if failure is None:
                batch.values[offset] = values[index]
                batch.remaining -= 1
                self.counts["succeeded"] += 1
                if record is not None:
                    record.succeeded(batch.keys[offset], batch.task, batch.calls[offset], values[index],
                                      attempt)
                continue
            error, tb, exc_bytes, retry, delay = failure
            if retry:  # it raised, or released itself (delay): both use up a try, as in the supervisor
                call = BatchJob(0, batch.name, b"", attempt, NO_OPTIONS, 1)
                now = time.time()
                if delay is None:
                    outcome = retry_rules.errored(call, NO_OPTIONS, self.config, error, tb, now)
                else:
                    outcome = retry_rules.released(call, NO_OPTIONS, self.config, delay, now)
                if outcome.state == PENDING:
                    self._retry_call(batch, offset, attempt, outcome.available_at - now)
                    continue
                error = outcome.error
            self._failed(batch, offset, retry_rules.ERROR, error, tb, exc_bytes, attempt)

    def _retry_call(self, batch: Batch, offset: int, attempt: int, delay: float) -> None:
        for job, _, offsets in self._jobs(batch, [offset], attempt):
            self._retry(job, batch, offsets, delay)

    def _retry(self, job: BatchJob, batch: Batch, offsets, delay: float) -> None:
        self.counts["retried"] += 1
        job = job._replace(attempt=job.attempt + 1)
        heapq.heappush(self.retries, (time.monotonic() + max(0.0, delay), job.id, job, batch, offsets))

    def _failed(self, batch: Batch, offset: int, reason: str, error: str, tb, exc_bytes, attempt: int) -> None:
        exception = None
        if exc_bytes is not None:
            try:
                exception = pickle.loads(exc_bytes)
            except Exception:  # noqa: BLE001 - the text and traceback still say what happened
                exception = None
        batch.failures[offset] = JobFailed(batch.describe(offset), reason, error, tb, exception, attempt)
        batch.remaining -= 1
        self.counts["failed"] += 1
        if self.record is not None and batch.keys and batch.keys[offset] is not None:
            self.record.failed(batch.keys[offset], batch.task, batch.calls[offset], error, tb, attempt)

    def _deliver(self, batch: Batch) -> None:
        """Hand a batch's answers over, once, when the last of its calls has ended."""
        if batch.remaining == 0 and not batch.delivered:
            batch.delivered = True
            if not batch.sink.cancelled:
                batch.sink.deliver(batch)

    def _unqueue(self, keep) -> set:
        """Take the calls of batches `keep` refuses out of waiting and retries; those batches."""
        gone = {e[1] for e in self.waiting if not keep(e[1])} | {e[3] for e in self.retries if not keep(e[3])}
        if gone:
            self.waiting = deque(e for e in self.waiting if e[1] not in gone)
            self.retries = [e for e in self.retries if e[3] not in gone]
            heapq.heapify(self.retries)
        return gone

    def _abort_all(self, why: str) -> None:
        batches = {entry[1] for entry in self.waiting} | {entry[1] for entry in self.runs.values()} \
            | {entry[3] for entry in self.retries}
        self.waiting.clear()
        self.runs.clear()
        self.retries.clear()
        for batch in batches:
            batch.sink.abort(why)

    # -- periodic and the end ------------------------------------------------------------
    def _draw(self, now: float) -> None:
        counts = self.counts
        done = counts["succeeded"] + counts["failed"] + counts["skipped"]
        self.progress.update(now, done, counts["failed"], counts["skipped"], self.total)

    def finish(self) -> None:
        """Write the last records and release what the loop holds."""
        with self.ending:
            if self.ended:
                return
            self.ended = True
        for message in self.inbox:
            if message[0] == "batch":
                message[1].sink.abort("the pool shut down before this call was run")
        self.inbox.clear()
        if self.record is not None:
            self.record.close()
        if self.thread.ident is not None:
            leftovers = process.kill_leftovers(sandbox.OWNER_ENV, self.owner, wait=LEFTOVER_WAIT)
            if leftovers:
                pool_log.warning("killed %d process(es) that calls left running", leftovers)
        if self.progress is not None:
            counts = self.counts
            self.progress.finish(time.monotonic(), counts["succeeded"] + counts["failed"] + counts["skipped"],
                                 counts["failed"], counts["skipped"], self.total)
        self.unwatch_fd(self.wake_r)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.wake_r = self.wake_w = -1
        self.selector.close()
