"""Self-fencing: a supervisor that could not renew its leases stops their jobs itself,
before another supervisor may rescue and rerun them.

    heartbeat renewed every lease at t (monotonic) --renewed(t)--> Fence
    each turn: t + lease - margin passed, not renewed since?
        --> fence: every pool drops its claims (workers running a job killed, claimed
            jobs forgotten, no outcome written for either); nothing is claimed
    storage answers again (after the exchange's backoff)
        --> write the results kept from before, rescue its own jobs still running in
            storage (back to their queues), lift the fence, renew, claim again

A lease lets another supervisor rescue a job `lease` seconds after its last renewal;
this one stops the job `margin` seconds before then, so one job runs on two hosts at
once only if this supervisor's loop stalls for longer than the margin (every storage
call it makes is bounded by [storage] call_timeout, well under it; while storage is
down, the fence closes early enough that the next retry, which may block for the
longest a call can, cannot carry it past the deadline). The results of
killed runs are never written: their leases are gone, and a late write would be
refused anyway (settling is fenced by attempt and owner). One line is logged when the
fence closes and one when it lifts; metrics: jobrt_fence_events_total, jobrt_fenced.
"""

from __future__ import annotations

import logging
import time

from runtime.errors import StorageError

log = logging.getLogger("jobrt")


def call_timeout(config) -> float:
    """Seconds a storage call may wait for the server: [storage] call_timeout, or lease / 6
    (at most half the fence margin)."""
    return config.call_timeout or min(config.lease / 6, fence_margin(config) / 2)


def fence_margin(config) -> float:
    """Seconds before its leases expire that a supervisor fences itself: [storage]
    fence_margin, or lease / 3."""
    return config.fence_margin or config.lease / 3


class Fence:
    """Whether this supervisor is fenced, and when it will be unless it renews."""

    def __init__(self, lease: float, margin: float):
        self.lease = lease
        self.margin = margin
        self.renewed_at = time.monotonic()  # nothing is held before the first claim
        self.fenced_at: float | None = None
        self.events = 0

    def use(self, lease: float, margin: float) -> None:
        self.lease, self.margin = lease, margin

    @property
    def fenced(self) -> bool:
        return self.fenced_at is not None

    def renewed(self, at: float) -> None:
        """Every held lease was renewed with a time read at `at` (monotonic), or later."""
        self.renewed_at = at

    def next_timer(self) -> float:
        """When the fence closes unless the leases are renewed first (monotonic)."""
        return float("inf") if self.fenced else self.renewed_at + self.lease - self.margin

    def close(self, now: float) -> None:
        self.fenced_at = now
        self.events += 1

    def lift(self, now: float) -> float:
        """Open the fence; returns how long it was closed."""
        closed_for, self.fenced_at = now - self.fenced_at, None
        self.renewed_at = now
        return closed_for

    def collect(self):
        """Its metrics, for the supervisor's Prometheus registry."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield CounterMetricFamily("jobrt_fence_events", "Times this supervisor fenced itself: its "
                                  "leases were not renewed in time, so it killed the jobs it ran",
                                  value=self.events)
        yield GaugeMetricFamily("jobrt_fenced", "1 while this supervisor is fenced (storage "
                                "unreachable past lease - fence_margin: running and claiming "
                                "nothing), else 0", value=1 if self.fenced else 0)


class Fencing:
    """The Supervisor's side of the fence (mixed in): uses its fence, exchange, pools,
    storage, clock, owner and next_heartbeat."""

    def _fence_turn(self, now: float) -> None:
        """Each turn, after the deadlines: close the fence when the leases ran too short,
        or try to lift it when storage may be called again."""
        fence = self.fence
        if not fence.fenced:
            # While storage is unreachable, the next call may block for its longest (a
            # reconnect): fence now if the deadline could pass during it. A lock held too
            # long is an answer: the next call is bounded like any other.
            ahead = self.storage.longest_call if self.exchange.unreachable else 0.0
            if now + ahead >= fence.next_timer():
                self._close_fence(now)
        elif self.exchange.may_call(now):
            self._lift_fence(now)

    def _close_fence(self, now: float) -> None:
        dropped = sum(pool.drop_claims(now) for pool in self.pools)
        self.fence.close(now)
        log.error("fenced: leases not renewed for %.1f s (lease %g s, fence_margin %g s); killed "
                  "or dropped %d claimed jobs, claiming none until storage answers (other "
                  "supervisors rescue those jobs once their leases expire)",
                  now - self.fence.renewed_at, self.fence.lease, self.fence.margin, dropped)

    def _lift_fence(self, now: float) -> None:
        # The results of runs that ended before the fence first: still this supervisor's
        # unless rescued meanwhile (then refused). Then its jobs still running in storage
        # are the dropped ones: back to their queues.
        if not self.exchange.sync(now, self.pools, force=True):
            return  # still down: the exchange backed off
        try:
            self.clock.sync(self.storage)
            rescued = self.storage.rescue(self.clock.now(), owner=self.owner)
        except StorageError as exc:
            self.exchange.failed(now, exc)
            return
        self.exchange.recovered(now)
        log.warning("fence lifted: storage answers again after %.1f s fenced; %d of this "
                    "supervisor's jobs back in their queues; claiming again",
                    self.fence.lift(now), rescued)
        self.next_heartbeat = now  # renew at once
        self._wake_pools()
