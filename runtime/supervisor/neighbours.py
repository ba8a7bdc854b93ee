"""The other supervisors of this host, as one supervisor watches them: their jobs are
rescued the moment one dies, without waiting for its leases to run out.

Each live neighbour (a supervisor row with this host's name) is held by a pidfd in
the supervisor's selector; its death wakes the loop, which returns the dead one's
running jobs to pending and kills what its jobs left running. A neighbour that
started since the last heartbeat is found by the next one. Supervisors on other
hosts are rescued by lease expiry alone.
"""

from __future__ import annotations

import logging
import os

import psutil

from runtime.workers import process, sandbox

log = logging.getLogger("jobrt")


class Neighbours:
    def __init__(self, storage, host: str, owner: str, loop):
        self.storage = storage
        self.host = host
        self.owner = owner
        self.loop = loop  # watch_call / unwatch_fd, and neighbour_died(owner) when a pidfd fires
        self.pidfds: dict[str, int] = {}  # owner -> pidfd of a live supervisor on this host

    def watch(self, wall: float) -> int:
        """Watch the neighbours the supervisors table lists; rescue those already dead.
        Returns how many jobs were rescued."""
        rows = self._neighbours()
        for owner in set(self.pidfds) - {row.owner for row in rows}:
            self._forget(owner)  # it stopped cleanly and removed its row
        dead = []
        for row in rows:
            if row.owner in self.pidfds:
                continue
            try:
                fd = os.pidfd_open(row.pid)
            except OSError:
                dead.append(row)
                continue
            if not alive(row.pid, row.started_at):  # the pid is another process's now
                os.close(fd)
                dead.append(row)
                continue
            self.pidfds[row.owner] = fd
            self.loop.watch_call(fd, lambda _mask, owner=row.owner: self.loop.neighbour_died(owner))
        return self._rescue(dead, wall)

    def died(self, owner: str, wall: float) -> int:
        self._forget(owner)
        return self.rescue_dead(wall)

    def rescue_dead(self, wall: float) -> int:
        """Rescue at once the jobs of supervisors on this host whose process is gone."""
        return self._rescue([row for row in self._neighbours() if not alive(row.pid, row.started_at)], wall)

    def _neighbours(self) -> list:
        """The supervisors table's rows of the other supervisors on this host."""
        return [row for row in self.storage.supervisors() if row.host == self.host and row.owner != self.owner]

    def _rescue(self, dead: list, wall: float) -> int:
        rescued = 0
        for row in dead:
            count = self.storage.rescue(wall, owner=row.owner)
            self.storage.remove_supervisor(row.owner)
            if count:
                log.warning("rescued %d jobs of dead supervisor %s", count, row.owner)
            leftovers = process.kill_leftovers(sandbox.OWNER_ENV, row.owner)
            if leftovers:
                log.warning("killed %d process(es) that jobs of dead supervisor %s left running",
                            leftovers, row.owner)
            rescued += count
        return rescued

    def close(self) -> None:
        for owner in list(self.pidfds):
            self._forget(owner)

    def _forget(self, owner: str) -> None:
        fd = self.pidfds.pop(owner)
        self.loop.unwatch_fd(fd)
        os.close(fd)


def alive(pid: int, started_at: float) -> bool:
    """Whether `pid` is still the process that started at `started_at` (not a reused pid)."""
    try:
        return abs(psutil.Process(pid).create_time() - started_at) < 1.0
    except psutil.Error:
        return False
