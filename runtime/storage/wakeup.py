"""Wake-up datagrams from clients to idle supervisors of the same database.

Each supervisor binds a datagram socket in Linux's abstract namespace named
after its database and pid (no file to clean up after a SIGKILL). A client
that committed an enqueue sends one byte to every such socket it finds in
/proc/net/unix. Loss is harmless: the supervisor also polls, slowly.
"""

from __future__ import annotations

import hashlib
import os
import socket

PREFIX = "jobrt-"


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


def wake(key: str) -> int:
    """Send a wake-up to every supervisor listening for `key`; returns how many."""
    prefix = "@" + _name(key)
    try:
        with open("/proc/net/unix", "rb") as table:
            names = [line.rsplit(None, 1)[-1].decode() for line in table if prefix.encode() in line]
    except OSError:
        return 0
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            if not name.startswith(prefix):
                continue
            try:
                sock.sendto(b"!", "\0" + name[1:])
                sent += 1
            except OSError:
                pass  # full buffer means a wake-up is already pending; a gone peer needs none
    return sent
