"""The Supervisor's heartbeat (mixed in): what it tells storage of itself and its workers
every `heartbeat_every` seconds, renewing its leases in the same write, and what it learns
there: neighbours that died, runs to cancel, operators' controls. Also the sweep for stray
processes that jobs left behind, and the one-line summary for `systemctl status`."""

from __future__ import annotations

import logging
import time

from runtime.errors import StorageError
from runtime.workers import process

log = logging.getLogger("jobrt")


class Heartbeats:
    """Uses the Supervisor's storage, pools, exchange, fence, clock, neighbours, stats,
    minutes, metrics and zygote."""

    def worker_exited(self) -> None:
        self._kill_strays()

    def _kill_strays(self) -> None:
        known = {pid for pool in self.pools for pid in pool.pids()}
        if self.import_check is not None:
            known.add(self.import_check.pid)
        if self.zygote is not None:
            known.update(self.zygote.pids())
        strays = process.kill_strays(known, self.zygote.pid if self.zygote is not None else 0)
        if strays:
            log.warning("killed %d process(es) that jobs started and abandoned (orphans, out of "
                        "their worker's process group): %s", len(strays), ", ".join(map(str, strays)))

    def _heartbeat(self, wall: float) -> bool:
        """Renew; False if storage failed (then the next try comes with the exchange's backoff,
        not a whole heartbeat later: one more missed renewal reaches the fence)."""
        at = time.monotonic()  # `wall` was read just before: the leases run from here
        self._kill_strays()
        workers = [worker for pool in self.pools for worker in pool.describe_workers()]
        info = {"workers": workers, "rate": round(self.stats.rate, 1), "done": self.stats.done,
                "restarts": self.stats.restarts,
                "pools": {p.config.name: p.describe() for p in self.pools if not p.retired},
                "jobs": self.job_names}
        held = [job.id for pool in self.pools for job in pool.held()]
        try:
            started = time.perf_counter()
            self.storage.heartbeat(self.owner, self.host, self.pid, self.started_at, info,
                                   wall, wall + self.config.lease, held=held)
            self.fence.renewed(at)
            self.clock.sync(self.storage)
            self._rescued(self.neighbours.watch(wall))
            self._cancel_requested()
            self._read_controls()
            self.minutes.write(self.storage, wall)
            if self.metrics is not None:
                self.metrics.storage_round_trip("heartbeat", time.perf_counter() - started)
                self.metrics.set_workers(workers)
                self.metrics.set_targets(info["pools"])
                self.metrics.set_queue_depths(self.storage.counts(wall))
        except StorageError as exc:
            self.exchange.failed(at, exc)
            return False
        self.exchange.recovered(time.monotonic())
        return True

    def _summary(self) -> str:
        """One line for `systemctl status`: workers busy/total, throughput, outage."""
        busy = total = 0
        for pool in self.pools:
            pool_busy, pool_total = pool.busy()
            busy, total = busy + pool_busy, total + pool_total
        line = f"{busy}/{total} workers busy, {self.stats.rate:.1f} jobs/s, {self.stats.done} jobs done"
        if self.stopping:
            line = "stopping: " + line
        if self.exchange.down:
            line += ", storage unavailable"
        return line

    def neighbour_died(self, owner: str) -> None:
        """A supervisor of this host ended (its pidfd said so): rescue its jobs now."""
        if not self.exchange.may_call(time.monotonic()):
            return  # the periodic rescue does it once storage answers
        try:
            self._rescued(self.neighbours.died(owner, self.clock.now()))
        except StorageError as exc:
            self.exchange.failed(time.monotonic(), exc)  # the periodic rescue tries again

    def _rescued(self, count: int) -> None:
        if count:
            self._wake_pools()

    def _cancel_requested(self) -> None:
        """Kill the runs that q.cancel / jobrt cancel asked to stop (asked on every wake-up,
        so at once on this host or with PostgreSQL's notifications, else each heartbeat)."""
        if not self.exchange.may_call(time.monotonic()):
            return
        try:
            wanted = set(self.storage.cancel_requests(self.owner))
        except StorageError as exc:
            self.exchange.failed(time.monotonic(), exc)
            return
        if wanted:
            now = time.monotonic()
            for pool in self.pools:
                pool.cancel(wanted, now)

