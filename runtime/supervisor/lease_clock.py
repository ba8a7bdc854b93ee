"""The time a supervisor writes into leases and rescues: storage's clock, kept by the
monotonic clock between readings.

A lease is judged by whoever compares it with "now". With PostgreSQL that comparison
mixes the times of many hosts, so every supervisor takes "now" from the database
server's clock (storage.clock()), read at start and at every heartbeat, and counts the
time in between on its monotonic clock: a step of this host's wall clock (an
operator's `date -s`, a VM resumed, NTP stepping by an hour) neither makes it rescue
live jobs early nor lets it write leases that never expire, nor does it make others
rescue its live jobs. SQLite's and memory's clock is this host's wall clock, which
every supervisor of the one host shares.
"""

from __future__ import annotations

import time


class LeaseClock:
    """`now()`: storage's time (epoch seconds) as of the last `sync()`, plus the
    monotonic seconds since."""

    def __init__(self) -> None:
        self.offset = time.time() - time.monotonic()  # until the first sync: this host's clock

    def now(self) -> float:
        return time.monotonic() + self.offset

    def sync(self, storage) -> None:
        """Read storage's clock (may raise StorageError); the middle of the round trip is
        taken as the moment it was read."""
        before = time.monotonic()
        then = storage.clock()
        self.offset = then - (before + time.monotonic()) / 2
