"""The supervisor's side of storage: results waiting to be written, claims, outages.

Results (Outcomes) wait at most FLUSH_DELAY to share one transaction with
other results and with the next claim. When storage fails, the Exchange keeps
every result, stops claiming, retries with backoff, and logs one line when an
outage starts and one when it ends. While it backs off, the supervisor makes no
other storage call either (`may_call`): a call to an unreachable server blocks the
loop for up to [storage] call_timeout, so at most one is made per retry. Results
storage refused because their runs' leases were lost are logged, one line per batch.
"""

from __future__ import annotations

import logging
import time

from runtime.errors import StorageError
from runtime.storage.base import PENDING
from runtime.supervisor import run_context

log = logging.getLogger("jobrt")

FLUSH_DELAY = 0.002  # seconds a result may wait to share a transaction with others
FLUSH_BATCH = 512
OUTAGE_AFTER = 0.5  # seconds of lock contention before it is reported as an outage
READ_AHEAD = 0.01  # seconds of work (at the current rate) claimed beyond the free slots


class Exchange:
    def __init__(self, owner: str, lease: float, stats, clock, fence):
        self.owner = owner
        self.lease = lease
        self.stats = stats
        self.clock = clock  # the LeaseClock: leases are written in storage's time
        self.fence = fence  # fenced: claim nothing
        self.storage = None  # set once opened
        self.outbox: list = []  # Outcomes taken from the pools, not yet written
        self.outbox_since = 0.0
        self.down_since: float | None = None
        self.outage_logged = False
        self.failures = 0
        self.unreachable = False  # down, and the last failure was not lock contention
        self.retry_at = 0.0
        self.paused: frozenset = frozenset()  # queues no claim takes (`jobrt pause`)

    def pause_only(self, queues: frozenset) -> None:
        """Claim no job of these queues from now on (the paused ones storage holds)."""
        self.paused = queues

    def next_timer(self) -> float:
        nearest = float("inf")
        if self.outbox:
            nearest = self.outbox_since + FLUSH_DELAY  # 0 + delay: not yet timed, sync soon
        if self.down_since is not None:
            nearest = min(nearest, self.retry_at)
        return nearest

    def sync(self, now: float, pools, force: bool = False) -> bool:
        """Write the pools' results and claim jobs for them, in as few transactions as possible."""
        outbox = self.outbox
        for pool in pools:
            outbox += pool.take_outcomes()
        if outbox and not self.outbox_since:
            self.outbox_since = now
        if self.down_since is not None and now < self.retry_at and not force:
            return False
        self.stats.update_rate(now)
        extra = min(256, int(self.stats.rate * READ_AHEAD))
        wants = [] if self.fence.fenced else [(pool, pool.wanted(extra)) for pool in pools]
        wants = [(pool, want) for pool, want in wants if want > 0]
        flush = outbox and (force or len(outbox) >= FLUSH_BATCH or now - self.outbox_since >= FLUSH_DELAY)
        if not wants and not flush:
            return True
        wall = self.clock.now()
        metrics = self.stats.metrics
        # Retries and releases this supervisor writes: it wakes when the first is due
        # instead of waiting for the next poll.
        retry_at = _first_retry(outbox) if flush else None
        try:
            for pool, want in wants:
                # a balanced pool claims for each queue what that queue's workers can take
                for queues, want in pool.claims() if pool.balanced else ((pool.config.queues, want),):
                    asked = queues
                    queues = [queue for queue in asked if queue not in self.paused]
                    if not queues:  # all paused: ask again when woken (a resume wakes it)
                        pool.no_more(None, asked)
                        continue
                    started = time.perf_counter()
                    jobs = run_context.attach(self.storage, self.storage.exchange(
                        self.owner, outbox, queues, want, wall + self.lease, wall))
                    if metrics is not None:
                        metrics.storage_round_trip("exchange", time.perf_counter() - started)
                    self._refused(len(outbox))
                    outbox.clear()
                    self.stats.claimed(wall, jobs)
                    pool.give(jobs)
                    if len(jobs) < want:
                        due = self.storage.next_due(queues)
                        pool.no_more(None if due is None else now + max(0.0, due - wall), queues)
            if outbox:
                started = time.perf_counter()
                self.storage.settle(self.owner, outbox)
                if metrics is not None:
                    metrics.storage_round_trip("settle", time.perf_counter() - started)
                self._refused(len(outbox))
                outbox.clear()
        except StorageError as exc:
            self.failed(now, exc)
            return False
        self.outbox_since = 0.0
        self.recovered(now)
        if retry_at is not None:
            for pool in pools:
                pool.expect_due(now + max(0.0, retry_at - wall))
        return True

    def failed(self, now: float, exc: StorageError) -> None:
        """Note a failed storage call: back off, and report the outage once.

        Lock contention (a write lock held a moment too long) is retried within
        milliseconds and reported only once it has lasted OUTAGE_AFTER seconds; any
        other failure (a lost connection, a full disk) is reported at once."""
        if self.down_since is None:
            self.down_since = now
            self.outage_logged = False
        contended = getattr(exc, "contended", False)
        self.unreachable = not contended
        if not self.outage_logged and (not contended or now - self.down_since >= OUTAGE_AFTER):
            self.outage_logged = True
            log.error("storage unavailable: %s; not claiming, keeping %d results in memory, retrying",
                      exc, len(self.outbox))
        self.failures += 1
        self.retry_at = now + min(5.0, 0.01 * 2 ** self.failures)
        if not contended:
            # A call to an unreachable server blocked the loop (up to call_timeout) since
            # `now`: keep the loop free at least twice as long before the next attempt.
            after = time.monotonic()
            self.retry_at = max(self.retry_at, after + 2 * (after - now))

    def may_call(self, now: float) -> bool:
        """Whether storage may be called now: it works, or its backoff ran out."""
        return self.down_since is None or now >= self.retry_at

    def _refused(self, sent: int) -> None:
        refused = self.storage.refused
        if sent and refused:
            log.warning("storage refused %d of %d results: their runs' leases were lost (the "
                        "jobs were rescued for another run), so they were not written", refused, sent)

    def recovered(self, now: float) -> None:
        if self.down_since is not None:
            if self.outage_logged:
                log.warning("storage is back after %.1f s", now - self.down_since)
            self.down_since = None
            self.unreachable = False
            self.failures = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None


def _first_retry(outbox: list) -> float | None:
    """When the first of these results that put a job back to pending makes it due."""
    due = [outcome.available_at for outcome in outbox
           if outcome.state == PENDING and outcome.available_at is not None]
    return min(due) if due else None
