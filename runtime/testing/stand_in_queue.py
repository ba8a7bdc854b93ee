"""What the fake and the eager queue share: a runtime.client.Queue over one in-memory store
on a fake clock, which connect() hands out while the test helper is active.

    fake_queue() / eager_queue()  --stand_in.enter-->  connect(url | config=) returns
        a StandInQueue of the same kind over the same Shared store, with the checks of the
        config it names (its [jobs] modules, its pools' queues, its [rate_limits])

Everything a production client checks (JSON arguments, registered names, options, served
queues) is the client's own code here: a test fails where production would.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager

from runtime import stand_in
from runtime.client import Queue
from runtime.config.load import check_pool, load_config
from runtime.errors import UnknownJob
from runtime.registry import JobSpec, resolve
from runtime.storage.memory import MemoryStorage


class FakeClock:
    """Seconds since the epoch, standing still until advanced: what "now" is for a stand-in's
    storage and client. It starts at the wall clock's time when made."""

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if not seconds >= 0:  # also refuses NaN
            raise ValueError(f"advance(seconds): a number of seconds >= 0, got {seconds!r:.60}")
        self._now += seconds
        return self._now

    def move_to(self, at: float) -> None:
        """Forward to `at`; never back."""
        self._now = max(self._now, at)


class Shared:
    """The state every view of one stand-in shares: the store, the clock, the config it was
    made with and its pools (their job defaults: tries, backoff, timeout), and the job specs
    its clients resolved (jobs defined in a test module, or named by @job(name=...), found
    again by name when they run)."""

    def __init__(self, config_path: str | None):
        self.clock = FakeClock()
        self.storage = MemoryStorage(clock=self.clock.now)
        self.specs = Specs()
        self.config = None
        self._use([check_pool({"queues": ["default"]}, "default")])
        if config_path is not None:
            self.adopt(load_config(config_path))

    def adopt(self, cfg) -> None:
        """Take the pools of the first config given: the stand-in's own, else the first one
        the code under test connects with (what a supervisor of it would run)."""
        if self.config is None:
            self.config = cfg
            self._use(cfg.pools.values())

    def _use(self, pools) -> None:
        # One worker, this process's user (the eager queue's run_in_worker forks it).
        self.pools = [dataclasses.replace(pool, workers=1, balance="off", max_jobs=0, max_time=0,
                                          user="", group="", run_as_root=True) for pool in pools]
        self.order = [queue for pool in self.pools for queue in pool.queues]

    def pool_for(self, queue: str):
        """The pool whose defaults a job of `queue` gets: the first that serves it."""
        return next((pool for pool in self.pools if queue in pool.queues), self.pools[0])

    def close(self) -> None:
        self.storage.close()


class Specs(dict):
    """name -> JobSpec, as a worker's registry: the jobs the stand-in's clients resolved, and
    any other `module:function` found by importing its module (a callback, a failure hook)."""

    def get(self, name, default=None):
        spec = dict.get(self, name)
        if spec is None:
            try:
                spec = self[name] = resolve(name)
            except UnknownJob:
                return default
        return spec

    def __contains__(self, name) -> bool:
        return self.get(name) is not None


class StandInQueue(Queue):
    """A client Queue over a stand-in's store; `connect()` makes another over the same store."""

    def __init__(self, config: str | None = None, *, shared: Shared | None = None):
        if shared is None:
            shared = self.shared = Shared(config)
            cfg = shared.config
        else:
            self.shared = shared
            cfg = None if config is None else load_config(config)
            if cfg is not None:
                shared.adopt(cfg)
        checks = {} if cfg is None else dict(
            modules=cfg.modules, module_path=cfg.module_path, config_path=cfg.path,
            pools={name: pool.queues for name, pool in cfg.pools.items()}, limiters=cfg.rate_limits)
        super().__init__(shared.storage, clock=shared.clock.now, **checks)

    def connect(self, url: str | None = None, config: str | None = None) -> "StandInQueue":
        """What runtime.connect(url or config=) returns while this stand-in is active."""
        return type(self)(config, shared=self.shared)

    def _spec(self, job) -> JobSpec:
        spec = super()._spec(job)
        self.shared.specs.setdefault(spec.name, spec)
        return spec

    def close(self) -> None:
        """Nothing to close: code under test may close its connection; the store lives until
        the stand-in's `with` block ends."""


@contextmanager
def standing_in(queue: StandInQueue):
    """connect() returns views of `queue` inside the block."""
    stand_in.enter(queue)
    try:
        yield queue
    finally:
        stand_in.leave(queue)
        queue.shared.close()
