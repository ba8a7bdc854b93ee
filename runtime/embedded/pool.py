"""runtime.Pool: jobrt's supervised workers inside a script, with the concurrent.futures shape.

    with Pool(workers=4, timeout=10, max_jobs=500) as pool:
        for result in pool.map(resize, paths):     # a hung or crashed call never breaks the pool
            ...

A call that raises, times out or kills its worker ends as JobFailed (raised,
or returned with errors="return"); the pool replaces the worker and goes on.
`map` is lazy and bounded: it reads its input as results are consumed, a few
chunks ahead, so 200,000 inputs never become 200,000 pending futures. Chunks
grow while calls are measured to be short, so tiny calls cost little each.
A map that is never iterated runs to completion when the pool shuts down (as
with concurrent.futures); one abandoned midway is cancelled.

Workers fork from this process on the pool's own thread when first needed,
so functions of __main__, lambdas and closures work; calls and results cross
private pipes pickled. With storage="sqlite:///run.db" every call is recorded
and a second run of the script skips the calls that succeeded.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import math
import os
import threading
import weakref
from concurrent.futures import Future, InvalidStateError
from queue import SimpleQueue

from runtime.config.load import check_pool
from runtime.embedded.batches import CALL_ARGS, CALL_ONE, CALL_STAR, Batch, PoolFunction
from runtime.embedded.loop import PoolLoop
from runtime.embedded.record import RunRecord
from runtime.errors import ConfigError, JobFailed, JobrtError
from runtime.workers import process

log = logging.getLogger("jobrt")

CHUNK_SECONDS = 0.003  # a map chunk is grown to about this much work: short enough to prefetch
MAX_CHUNK = 8192
ERRORS = ("raise", "return")
MANY_FUNCTIONS = 50


class Pool:
    def __init__(self, workers: int | None = None, *, timeout: float | None = None, max_jobs: int = 0,
                 max_time: float = 0, max_memory_mb: int = 0, memory_limit_mb: int = 0, tries: int = 1,
                 backoff=0, storage: str | os.PathLike | None = None, progress: bool = False,
                 errors: str = "raise"):
        if errors not in ERRORS:
            raise ValueError(f"Pool(errors={errors!r}): must be 'raise' or 'return'")
        values = {"workers": (os.cpu_count() or 1) if workers is None else workers, "timeout": timeout,
                  "max_jobs": max_jobs, "max_time": max_time, "max_memory_mb": max_memory_mb,
                  "memory_limit_mb": memory_limit_mb, "tries": tries, "backoff": backoff,
                  "queues": ["pool"], "grace": 5.0,
                  "run_as_root": True}  # the workers are this script's own processes, as it is
        try:
            config = check_pool(values, "Pool")
        except ConfigError as exc:
            key = exc.key.partition(".")[2]
            raise ValueError(f"Pool({key}={values.get(key)!r}): {str(exc)[len(exc.key) + 2:]}") from None
        process.require_pidfd()
        if timeout is None:
            config = dataclasses.replace(config, timeout=math.inf)
        self.config = config
        self.errors = errors
        record = RunRecord(storage) if storage is not None else None
        self._loop = PoolLoop(config, record, progress=progress)
        self._names: dict = {}
        self._lock = threading.Lock()
        self._maps: list[_MapRun] = []
        self._closed = False
        self._finalizer = weakref.finalize(self, _abandon, self._loop)

    # -- submitting -------------------------------------------------------------------
    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Run fn(*args, **kwargs) in a worker; its Future holds the result or a JobFailed."""
        name, task = self._function(fn, "submit")
        future = Future()
        self._loop.post(("total", 1))
        self._loop.post(("batch", Batch(_FutureSink(future, self.errors, task), 0, name, task, CALL_ARGS,
                                        [(args, kwargs)])))
        return future

    def map(self, fn, *iterables, ordered: bool = True, chunksize: int | None = None,
            errors: str | None = None):
        """Yield fn(item) for each item (fn(*items) over several iterables), in input order,
        or as they finish with ordered=False."""
        if not iterables:
            raise TypeError("Pool.map needs at least one iterable")
        if chunksize is not None and (isinstance(chunksize, bool) or not isinstance(chunksize, int)
                                      or chunksize < 1):
            raise ValueError(f"Pool.map(chunksize={chunksize!r}): must be an integer >= 1, or None to adapt")
        if errors is not None and errors not in ERRORS:
            raise ValueError(f"Pool.map(errors={errors!r}): must be 'raise' or 'return'")
        name, task = self._function(fn, "map")
        total = None
        if all(hasattr(it, "__len__") for it in iterables):
            total = min(len(it) for it in iterables)
        if len(iterables) == 1:
            source, mode = iter(iterables[0]), CALL_ONE
        else:
            source, mode = zip(*iterables), CALL_STAR
        run = _MapRun(self, name, task, mode, source, ordered, chunksize, errors or self.errors)
        with self._lock:
            self._maps.append(run)
        self._loop.post(("total", total))
        return run.results()

    def _function(self, fn, verb: str) -> tuple[str, str]:
        """The name of fn in the workers' table, adding it (and refreshing workers) if new."""
        if not callable(fn):
            raise TypeError(f"Pool.{verb}: fn must be callable, got {fn!r:.80}")
        ident = (id(fn.__func__), id(fn.__self__)) if inspect.ismethod(fn) else id(fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot use the pool after it was shut down")
            loop = self._loop
            if loop.failure is not None:
                raise JobrtError(f"the pool failed and cannot run more ({loop.failure!r})")
            known = self._names.get(ident)
            if known is not None:
                return known
            qualname = getattr(fn, "__qualname__", type(fn).__name__)
            task = f"{getattr(fn, '__module__', None) or '?'}:{qualname}"
            name = f"{qualname}#{len(self._names)}"
            loop.registry[name] = PoolFunction(fn)  # kept alive here, so its id is never reused
            self._names[ident] = (name, task)
            if len(self._names) == MANY_FUNCTIONS:
                log.warning("pool: %d different functions so far, and workers are replaced for each "
                            "new one; submit one function with different arguments, not a new lambda "
                            "or closure per call", MANY_FUNCTIONS)
            if loop.thread.is_alive():
                loop.post(("function", name))
            else:
                loop.thread.start()
        return name, task

    # -- the end ------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Finish what was submitted, then stop the workers. With cancel_futures, calls
        not yet started are cancelled (maps stop), and running ones finish."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            maps = list(self._maps)
        loop = self._loop
        if loop.thread.ident is None:  # never started: nothing ran
            loop.finish()
            return
        if not loop.thread.is_alive():  # it failed, and said so to every waiting call
            return
        try:
            for run in maps:
                run.drain() if not (run.started or cancel_futures) else run.cancel()
            if cancel_futures:
                loop.post(("drop", "the pool was shut down with cancel_futures=True"))
            loop.post(("stop",))
            if wait:
                loop.thread.join()
        except BaseException:
            self.terminate("the pool's shutdown was interrupted")
            raise

    def terminate(self, why: str = "the pool was terminated") -> None:
        """Kill the workers now; unfinished calls end as JobFailed(reason='cancelled')."""
        with self._lock:
            self._closed = True
        loop = self._loop
        if loop.thread.is_alive():
            loop.post(("kill", why))
            loop.thread.join()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            self.terminate(f"the script raised {exc_type.__name__}")

    @property
    def stats(self) -> dict:
        """Counts so far: succeeded, failed, skipped (recorded by an earlier run), retried,
        and worker restarts by reason (timeout, crash, max_jobs, max_time, memory, ...)."""
        loop = self._loop
        return {**loop.counts, "restarts": dict(loop.stats.restarts), "workers": len(loop.pool.workers)}


def _abandon(loop: PoolLoop) -> None:
    """At exit (or collection) of a pool nobody shut down: kill its workers."""
    if loop.thread.ident is None:
        loop.finish()
    elif loop.thread.is_alive():
        loop.post(("kill", "the pool was not shut down before the script ended"))
        loop.thread.join(10)


class _FutureSink:
    """Where the answer of one submit goes."""

    __slots__ = ("future", "errors", "task", "started")

    def __init__(self, future: Future, errors: str, task: str):
        self.future = future
        self.errors = errors
        self.task = task
        self.started = False

    @property
    def cancelled(self) -> bool:
        return self.future.cancelled()

    def start(self) -> bool:
        if self.started:
            return True
        self.started = True
        return self.future.set_running_or_notify_cancel()

    def deliver(self, batch: Batch) -> None:
        failure = batch.failures.get(0)
        try:
            if failure is None:
                self.future.set_result(batch.values[0])
            elif self.errors == "return":
                self.future.set_result(failure)
            else:
                self.future.set_exception(failure)
        except InvalidStateError:
            pass  # cancelled meanwhile

    def abort(self, why: str) -> None:
        if not self.future.cancel():
            try:
                self.future.set_exception(JobFailed(self.task, "cancelled", why))
            except InvalidStateError:
                pass


class _MapRun:
    """One map: feeds chunks a window ahead of what was consumed; answers arrive on `queue`."""

    def __init__(self, pool: Pool, name: str, task: str, mode: int, source, ordered: bool,
                 chunksize: int | None, errors: str):
        self.pool = pool
        self.name, self.task, self.mode = name, task, mode
        self.source = source
        self.ordered = ordered
        self.chunksize = chunksize
        self.errors = errors
        self.queue: SimpleQueue = SimpleQueue()
        self.cancelled = False
        self.started = self.finished = False
        config = pool.config
        self.window = config.workers * (config.prefetch + 1) + 2  # chunks sent and not yet consumed
        self.target = min(CHUNK_SECONDS, config.timeout / 10)
        # a tenth of max_jobs at most, so a worker is recycled close to max_jobs calls
        self.largest = min(MAX_CHUNK, max(1, config.max_jobs // 10)) if config.max_jobs else MAX_CHUNK

    # the loop's side
    def start(self) -> bool:
        return not self.cancelled

    def deliver(self, batch: Batch) -> None:
        self.queue.put(batch)

    def abort(self, why: str) -> None:
        self.queue.put(why)

    # the script's side
    def results(self):
        self.started = True
        try:
            yield from self._iterate()
            self.finished = True
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop feeding; calls not yet started are dropped, running ones finish."""
        if not (self.cancelled or self.finished):
            self.cancelled = True
            self.pool._loop.post(("cancel", self))
        with self.pool._lock:
            if self in self.pool._maps:
                self.pool._maps.remove(self)

    def drain(self) -> None:
        """Run a map nobody iterated to its end (the pool is shutting down)."""
        self.errors = "return"
        failed = [value for value in self.results() if isinstance(value, JobFailed)]
        if failed:
            log.warning("pool: %d calls of a map whose results were never read failed; the first: %s",
                        len(failed), failed[0])

    def _iterate(self):
        post, queue, ordered = self.pool._loop.post, self.queue, self.ordered
        chunk = self.chunksize or 1
        sent = consumed = 0
        ready: dict = {}
        exhausted = False
        while True:
            if self.cancelled:
                raise JobrtError(f"map of {self.task} was cancelled: the pool shut down before it ended")
            while not exhausted and sent - consumed < self.window:
                items = list(itertools.islice(self.source, chunk))
                if not items:
                    exhausted = True
                    break
                post(("batch", Batch(self, sent, self.name, self.task, self.mode, items)))
                sent += 1
            if consumed == sent:
                return
            batch = ready.pop(consumed, None) if ordered else None
            while batch is None:
                got = queue.get()
                if isinstance(got, str):
                    raise JobrtError(f"map of {self.task} stopped: {got}")
                if not ordered or got.seq == consumed:
                    batch = got
                else:
                    ready[got.seq] = got
            consumed += 1
            if self.chunksize is None and batch.per_call is not None:
                fits = int(self.target / max(batch.per_call, 1e-7))
                chunk = max(1, min(chunk * 4, fits, self.largest))
            if not batch.failures:
                yield from batch.values
                continue
            for offset, value in enumerate(batch.values):
                failure = batch.failures.get(offset)
                if failure is None:
                    yield value
                elif self.errors == "return":
                    yield failure
                else:
                    raise failure
