"""The sd_notify protocol: one datagram of KEY=VALUE lines to $NOTIFY_SOCKET.

Written here rather than linked from libsystemd: it is a dozen lines, and a
supervisor not started by systemd simply has no NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import socket
import time


def notify(message: str, wait: float = 0.0) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; False when not under systemd or
    when it could not be delivered.

    A datagram to a receiver whose queue is full (net.unix.max_dgram_qlen, as low as
    10) blocks the sender until the receiver reads: the supervisor's loop must never
    hang on that, so it waits at most `wait` seconds. Periodic STATUS and WATCHDOG
    pings pass 0 (the next one follows soon); state changes pass a little longer."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(wait if wait > 0 else 0.0)
            sock.sendto(message.encode(), address)
    except OSError:  # socket.timeout and BlockingIOError included
        return False
    return True


STATE_WAIT = 1.0  # seconds a READY, RELOADING or STOPPING message may wait for a full queue


def watchdog_interval() -> float:
    """Seconds between WATCHDOG=1 pings (half systemd's WatchdogSec), or 0 when not asked."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return 0.0
    return int(usec) / 2e6


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
