"""Operators' requests for the Supervisor (mixed in): `jobrt pause|resume` and `jobrt restart`
are rows in storage (runtime.storage.ops) that every supervisor reads on its heartbeat, and
at once when a client on its host wakes it. A paused queue is left out of the claims the
Exchange makes (no query per claim: the set read here is all it looks at); a restart
request newer than the one seen at start replaces the workers, as SIGHUP does."""

from __future__ import annotations

import logging
import time

from runtime.errors import StorageError

log = logging.getLogger("jobrt")


class Controlling:
    """Uses the Supervisor's storage, exchange, stopping, _wake_pools and _reload; keeps
    restart_seen (None until the first read: requests made before this supervisor started
    are not for it)."""

    restart_seen: int | None = None

    def _read_controls(self) -> None:
        try:
            controls = self.storage.controls()
        except StorageError as exc:
            self.exchange.failed(time.monotonic(), exc)
            return
        paused = frozenset(controls.paused)
        before = self.exchange.paused
        if paused != before:
            if paused - before:
                log.info("queues paused (running jobs finish, no new one starts): %s",
                         ", ".join(sorted(paused - before)))
            if before - paused:
                log.info("queues resumed: %s", ", ".join(sorted(before - paused)))
                self._wake_pools()  # their due jobs: claim them in the next turn
            self.exchange.pause_only(paused)
        if self.restart_seen is None:
            self.restart_seen = controls.restart
        elif controls.restart > self.restart_seen:
            self.restart_seen = controls.restart
            if not self.stopping:
                self._reload(time.monotonic(), cause="jobrt restart")
