"""Wake-up datagrams from clients to idle supervisors of the same database.

Each supervisor binds a datagram socket in Linux's abstract namespace named
after its database and pid (no file to clean up after a SIGKILL). A client
that committed an enqueue sends one byte to every such socket it finds in
/proc/net/unix (a Waker: it reads that table at most every REFRESH seconds).
Loss is harmless: the supervisor also polls, slowly, and claims at its start.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time

PREFIX = "jobrt-"
# Seconds a client trusts the supervisors' sockets it last found: reading /proc/net/unix
# on every enqueue cost a quarter of a durable one-by-one enqueue.
REFRESH = 0.5


def _name(key: str) -> str:
    return PREFIX + hashlib.sha1(key.encode()).hexdigest()[:16] + "-"


class WakeListener:
    """The supervisor's end: a non-blocking socket to register in its event loop."""

    def __init__(self, key: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            self.sock.bind("\0" + _name(key) + str(os.getpid()))
        except OSError:
            # Abstract sockets are Linux only; elsewhere polling carries pickup.
            self.sock.close()
            self.sock = None

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock else -1

    def drain(self) -> None:
        while True:
            try:
                self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

    def close(self) -> None:
        if self.sock:
            self.sock.close()
            self.sock = None


class Waker:
    """A client's end: wakes every supervisor listening for `key`. The sockets are those
    found in /proc/net/unix at most REFRESH seconds ago; a supervisor started since then
    is woken from the next read on, and meanwhile finds the work by its poll."""

    def __init__(self, key: str):
        self.prefix = "@" + _name(key)
        self.names: list[str] = []
        self.read_at = -REFRESH
        self.sock: socket.socket | None = None

    def wake(self) -> int:
        """Send a wake-up to each; returns how many were sent."""
        now = time.monotonic()
        if now - self.read_at >= REFRESH:
            self.names, self.read_at = self._listening(), now
        if not self.names:
            return 0
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
        sent = 0
        for name in self.names:
            try:
                self.sock.sendto(b"!", "\0" + name[1:])
                sent += 1
            except BlockingIOError:
                pass  # its buffer is full: a wake-up is pending already
            except OSError:
                self.read_at = -REFRESH  # gone: read the table again next time
        return sent

    def _listening(self) -> list[str]:
        try:
            with open("/proc/net/unix", "rb") as table:
                found = [line.rsplit(None, 1)[-1].decode() for line in table
                         if self.prefix.encode() in line]
        except OSError:
            return []
        return [name for name in found if name.startswith(self.prefix)]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
