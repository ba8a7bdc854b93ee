"""The supervisor: one single-threaded event loop that owns storage and the workers.

    clients --enqueue--> storage <--exchange (settle + claim, batched)-- Supervisor
                          wake-up datagram --------------------------->   |  selector over: worker pipes,
                                                                          |  worker pidfds, signal self-pipe,
                                     WorkerPool  WorkerPool ...  <--------+  wake-up socket
                                     worker worker ...   (cloned by the zygote, one pipe pair each)

Each turn of the loop: wait (until the nearest deadline or timer) -> handle
fd events -> handle queued signals -> enforce deadlines -> write outcomes and
claim jobs in one transaction -> dispatch -> manage the pools -> periodic work
(heartbeat and lease renewal, rescue, poll). Signal handlers do nothing: the
wake-up fd carries the signal number into the loop. The base classes hold the rest:
`signals` (acting on them), `heartbeats`, `reloading` (SIGHUP), `fencing`, `controls`
(pause, restart), `wakeups`. The supervisor runs no user code and opens no thread. Every storage
call is bounded ([storage] call_timeout) and, after one fails, none is made until
the exchange's backoff allows; a supervisor whose leases could not be renewed in
time fences itself (`fencing`).
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import socket
import time

import psutil

from runtime.errors import StorageError
from runtime.storage import open_storage
from runtime.storage.network_fs import refuse_network_fs
from runtime.supervisor import sd_notify
from runtime.supervisor.controls import Controlling
from runtime.supervisor.exchange import Exchange
from runtime.supervisor.heartbeats import Heartbeats
from runtime.supervisor.fencing import Fence, Fencing, call_timeout, fence_margin
from runtime.supervisor.import_check import ImportCheck
from runtime.supervisor.lease_clock import LeaseClock
from runtime.supervisor.minutes import MinuteTally, MinuteWriter
from runtime.supervisor.neighbours import Neighbours
from runtime.supervisor.reloading import Reloading
from runtime.supervisor.signals import Signals
from runtime.supervisor.ticking import Ticker
from runtime.supervisor.wakeups import Wakeups
from runtime.supervisor.output_relay import OutputRelay
from runtime.workers import process, zygote
from runtime.workers.zygote_handle import Zygote
from runtime.workers.event_relay import hooks_registered
from runtime.workers.balanced_pool import worker_pool
from runtime.workers.selector import EventLoop
from runtime.workers.stats import Stats

log = logging.getLogger("jobrt")

PRUNE_EVERY = 10.0  # seconds between retention sweeps
PRUNE_BATCH = 500  # ended jobs deleted per transaction
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)


class Supervisor(Heartbeats, Signals, Fencing, Reloading, Wakeups, Controlling, EventLoop):
    def __init__(self, config, registry, log_format: str = "text", stop_rules=None, source_watch=None):
        super().__init__(OutputRelay(json_lines=log_format == "json"))
        self.stop_rules = stop_rules  # stopping_rules.StopRules: --until-empty, --max-jobs, --max-time
        self.source_watch = source_watch  # dev_reload.SourceWatch: --reload
        self.config = config
        self.registry = registry
        # JOBRT_HOST names the host where hostnames are not unique (containers);
        # supervisors on one host rescue each other's jobs without waiting for leases.
        self.host = os.environ.get("JOBRT_HOST") or socket.gethostname()
        self.pid = os.getpid()
        self.started_at = psutil.Process().create_time()
        self.owner = f"{self.host}:{self.pid}:{secrets.token_hex(3)}"
        self.metrics = None
        self.metrics_server = None
        if config.metrics_listen:
            from runtime.supervisor.metrics import Metrics  # prometheus_client: only with metrics on

            self.metrics = Metrics()
        self.stats = Stats(self.metrics, MinuteTally())  # the dashboard's per-minute rows
        self.minutes = MinuteWriter(self.stats.minutes)
        self.ticker = Ticker(config, registry, self.metrics)  # checks the schedules: ConfigError
        self.clock = LeaseClock()  # storage's time: leases never follow this host's wall clock
        self.fence = Fence(config.lease, fence_margin(config))
        self.exchange = Exchange(self.owner, config.lease, self.stats, self.clock, self.fence)
        self.pools = [worker_pool(pool, registry, self, self.stats, config.path, self.owner,
                                  events=hooks_registered())  # what the preloaded modules registered
                      for pool in config.pools.values()]
        self.storage = None
        self.listener = None
        self.listener_fd = -1
        self.listen_failed = False
        self.signals: list[int] = []
        self.stopping = False
        self.import_check: ImportCheck | None = None  # a reload waiting for its modules to import
        self.job_names = sorted(registry)  # what its workers run, told to clients in heartbeats
        self._use_lease(config.lease)
        self.next_heartbeat = self.next_rescue = self.next_poll = self.next_prune = 0.0
        self.next_balance = 0.0  # the next step of a pool with balance = "auto" (inf: none has it)
        self.watchdog_every = sd_notify.watchdog_interval()
        self.next_watchdog = 0.0 if self.watchdog_every else float("inf")

    def _use_lease(self, lease: float) -> None:
        """Renew leases well within their length, and sweep for expired ones twice a lease."""
        self.exchange.lease = lease
        self.fence.use(lease, fence_margin(self.config))
        self.heartbeat_every = min(2.0, lease / 3)
        self.rescue_every = max(0.5, lease / 2)

    # -- start and stop -------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped by a signal. Returns the process exit status."""
        self._setup()
        try:
            while not (self.stopping and all(pool.done for pool in self.pools)):
                self._turn()
        except BaseException:
            log.exception("supervisor failed; stopping its workers and returning their jobs")
            for pool in self.pools:
                pool.kill_all("the supervisor failed")
            self._finish()
            return 1
        self._finish()
        return 0

    def _setup(self) -> None:
        cfg = self.config
        refuse_network_fs(cfg.storage_url, cfg.base_dir, cfg.allow_network_fs, cfg.path)
        self.storage = open_storage(cfg.storage_url, role="supervisor", base_dir=cfg.base_dir,
                                    call_timeout=call_timeout(cfg))
        self.exchange.storage = self.storage
        self._listen()
        sig_r, sig_w = socket.socketpair()
        for sock in (sig_r, sig_w):
            sock.setblocking(False)
        self._signal_sockets = (sig_r, sig_w)  # held: collecting them would close the wake-up fd
        signal.set_wakeup_fd(sig_w.fileno(), warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, lambda *_: None)
        self.watch_call(sig_r.fileno(), lambda _mask: self._read_signals(sig_r))
        process.become_subreaper()
        self.neighbours = Neighbours(self.storage, self.host, self.owner, self)
        self.clock.sync(self.storage)
        self.neighbours.rescue_dead(self.clock.now())
        self._heartbeat(self.clock.now())
        if self.metrics is not None:
            self.metrics.registry.register(self.fence)
            from runtime.supervisor.metrics import MetricsServer

            self.metrics_server = MetricsServer(cfg.metrics_listen, self.metrics, self.selector,
                                                allow_remote=cfg.metrics_allow_remote, path=cfg.path)
            log.info("metrics on http://%s:%d/metrics", *self.metrics_server.address[:2])
        gc.collect()
        gc.freeze()  # keep the preloaded image's pages shared with the children
        if zygote.supported():
            self.zygote = Zygote(cfg.modules, cfg.module_path, cfg.path, self.relay is not None, self)
        now = time.monotonic()
        for pool in self.pools:
            pool.manage(now)
        log.info("supervisor %s started: %s", self.owner, ", ".join(
            f"pool {p.config.name} ({p.target} workers, queues {', '.join(p.config.queues)})"
            for p in self.pools))
        sd_notify.notify("READY=1\nSTATUS=running", sd_notify.STATE_WAIT)

    def _finish(self) -> None:
        sd_notify.notify("STOPPING=1", sd_notify.STATE_WAIT)
        for attempt in range(3):
            if self.exchange.sync(time.monotonic(), self.pools, force=True):
                break
            pause = 0.2 * (attempt + 1)
            if not self.exchange.may_call(time.monotonic() + pause):
                break  # it blocked for its call_timeout: unreachable, not busy
            time.sleep(pause)
        reachable = self.exchange.may_call(time.monotonic())
        try:
            if reachable:
                self.minutes.write(self.storage, time.time())  # the last counts, for the charts
        except StorageError:
            pass
        if self.exchange.outbox:
            log.error("could not write %d results before exiting; their jobs will run again "
                      "once their lease (%g s) expires", len(self.exchange.outbox), self.config.lease)
        try:
            if reachable:
                self.storage.remove_supervisor(self.owner)
        except StorageError:
            pass
        self._drop_listener()
        self.neighbours.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.zygote is not None:
            self.zygote.close()
        self.storage.close()
        signal.set_wakeup_fd(-1)
        log.info("supervisor %s stopped", self.owner)

    # -- one turn ---------------------------------------------------------------------
    def _turn(self) -> None:
        now = time.monotonic()
        timeout = self._timeout(now)
        self.wait(timeout)
        now = time.monotonic()
        if self.signals:
            self._handle_signals(now)
        for pool in self.pools:
            pool.enforce_deadlines(now)
        self._fence_turn(now)
        self.exchange.sync(now, self.pools)
        if self.stop_rules is not None and not self.stopping:
            # after the results are written, before the jobs just claimed are dispatched
            why = self.stop_rules.reached(now, self)
            if why:
                self.stop(now, why)
        for pool in self.pools:
            pool.dispatch(now)
            pool.manage(now)
        self._periodic(now)

    def _timeout(self, now: float) -> float:
        nearest = min(self.next_poll, self.next_watchdog, self.next_prune, self.next_balance,
                      self.exchange.next_timer(), self.fence.next_timer())
        calls = min(self.next_heartbeat, self.next_rescue)  # they wait for storage's backoff
        if not self.stopping:
            calls = min(calls, self.ticker.next_timer(now))
        nearest = min(nearest, calls if self.exchange.may_call(calls) else self.exchange.retry_at)
        if self.import_check is not None:
            nearest = min(nearest, self.import_check.deadline)
        if not self.stopping:  # once stopping, neither is looked at again: no wake-up for them
            if self.stop_rules is not None:
                nearest = min(nearest, self.stop_rules.next_timer())
            if self.source_watch is not None:
                nearest = min(nearest, self.source_watch.next_check)
        for pool in self.pools:
            nearest = min(nearest, pool.next_timer(now))
        return max(0.0, nearest - now)

    def _periodic(self, now: float) -> None:
        if self.import_check is not None and now >= self.import_check.deadline:
            self._reject_reload(self._take_import_check().abandon())
        if self.source_watch is not None and not self.stopping and now >= self.source_watch.next_check:
            changed = self.source_watch.changed(now)
            if changed:
                self._reload(now, cause=f"--reload: {', '.join(changed)} changed")
        if any(pool.retired and pool.done for pool in self.pools):
            self.pools = [pool for pool in self.pools if not (pool.retired and pool.done)]
        if now >= self.next_poll:
            self.next_poll = now + self.config.poll
            self._wake_pools()
            if self.listener is None and not self.exchange.down:
                self._listen()
        if self.metrics_server is not None:
            self.metrics_server.expire(now)
        if now >= self.next_watchdog:
            sd_notify.notify("WATCHDOG=1")  # from the loop itself: a stuck loop stops petting
            self.next_watchdog = now + self.watchdog_every
        if now >= self.next_heartbeat and self.exchange.may_call(now):
            if self._heartbeat(self.clock.now()):
                self.next_heartbeat = now + self.heartbeat_every
            sd_notify.notify("STATUS=" + self._summary())
        if now >= self.next_prune:
            self._prune(now)
        if not self.stopping and self.ticker.next_timer(now) <= now and self.exchange.may_call(now) \
                and self.ticker.run(self.storage, time.time(), now):
            self._wake_pools()  # claim the ticks' jobs in the next turn
        if now >= self.next_balance:
            self._balance(now)
        if now >= self.next_rescue and self.exchange.may_call(now):
            self.next_rescue = now + self.rescue_every
            try:
                wall = self.clock.now()
                self._rescued(self.storage.rescue(wall) + self.neighbours.rescue_dead(wall))
            except StorageError as exc:
                self.exchange.failed(now, exc)

    def _prune(self, now: float) -> None:
        """Delete ended jobs older than the retention, a small batch at a time so a big
        backlog of old records never holds the write lock long enough to stall claims."""
        self.next_prune = now + min(PRUNE_EVERY, max(0.1, self.config.retention / 2))
        if not self.config.retention or self.exchange.down:
            return
        try:
            before = time.time() - self.config.retention
            pruned = max(self.storage.prune(before, PRUNE_BATCH),
                         self.storage.prune_ticks(before, PRUNE_BATCH))
        except StorageError as exc:
            self.exchange.failed(now, exc)
            return
        if pruned == PRUNE_BATCH:
            self.next_prune = now + 0.05  # more to delete: go on soon, between claims

    def _balance(self, now: float) -> None:
        """Step the pools with balance = "auto" whose cooldown is over, from one read of the
        queues' counts (storage keeps them as counters: no scan of the jobs)."""
        due = [pool for pool in self.pools if pool.balanced and now >= pool.next_step and not pool.stopping]
        if due and not self.exchange.down:
            try:
                counts = self.storage.counts(time.time())
            except StorageError as exc:
                self.exchange.failed(now, exc)
            else:
                # a paused queue's backlog waits for `jobrt resume`: no worker moves to it
                counts = {queue: c for queue, c in counts.items() if queue not in self.exchange.paused}
                for pool in due:
                    if pool.rebalance(now, counts):
                        pool.manage(now)  # move, spawn and retire now, not a turn later
                        self.next_poll = now  # and claim for the moved workers at once
        self.next_balance = min((pool.next_step for pool in self.pools if pool.balanced and not pool.stopping),
                                default=float("inf"))
        self.next_balance = max(self.next_balance, now + 0.05)  # storage down: try again soon, not at once

    def _wake_pools(self) -> None:
        for pool in self.pools:
            pool.wake()
