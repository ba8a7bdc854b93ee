"""The sd_notify protocol: one datagram of KEY=VALUE lines to $NOTIFY_SOCKET.

Written here rather than linked from libsystemd: it is a dozen lines, and a
supervisor not started by systemd simply has no NOTIFY_SOCKET.

Also the unit's ExecReload: `python -m runtime.supervisor.sd_notify reload MAINPID`
(see `reload`).
"""

from __future__ import annotations

import array
import os
import select
import signal
import socket
import sys
import time


def notify(message: str, wait: float = 0.0) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; False when not under systemd or
    when it could not be delivered.

    A datagram to a receiver whose queue is full (net.unix.max_dgram_qlen, as low as
    10) blocks the sender until the receiver reads: the supervisor's loop must never
    hang on that, so it waits at most `wait` seconds. Periodic STATUS and WATCHDOG
    pings pass 0 (the next one follows soon); state changes pass a little longer."""
    address = _address()
    if not address:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(wait if wait > 0 else 0.0)
            sock.sendto(message.encode(), address)
    except OSError:  # socket.timeout and BlockingIOError included
        return False
    return True


STATE_WAIT = 1.0  # seconds a READY, RELOADING or STOPPING message may wait for a full queue
BARRIER_WAIT = 5.0  # seconds `barrier` waits for systemd (libsystemd's sd_notify_barrier default)


def _address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    return "\0" + address[1:] if address.startswith("@") else address


def barrier(timeout: float = BARRIER_WAIT) -> bool:
    """Wait until systemd has processed every message this process sent before: BARRIER=1
    carries the write end of a pipe, which systemd closes once it reads that far (systemd
    246 and newer understand it; older ones close a descriptor they do not expect, and
    the wait is bounded anyway). False when not under systemd, or after `timeout` seconds."""
    address = _address()
    if not address:
        return False
    reader, writer = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                           array.array("i", [writer]))], 0, address)
        os.close(writer)
        writer = -1
        poller = select.poll()
        poller.register(reader, select.POLLHUP)  # hung up: systemd's copy is closed too
        return bool(poller.poll(timeout * 1000))
    except OSError:
        return False
    finally:
        os.close(reader)
        if writer >= 0:
            os.close(writer)


def reload(main_pid: int) -> None:
    """The unit's ExecReload. SIGHUP alone would make `systemctl reload` return as soon as
    the signal is sent, often before the supervisor has even read it, so a deploy that
    enqueues right after could have its jobs run by the old workers. Instead this tells
    systemd first that a reload is under way (RELOADING=1, accepted from the unit's own
    commands with NotifyAccess=exec) and waits until systemd has read that (a barrier);
    then sends SIGHUP. systemd keeps the reload going when this exits, until the
    supervisor's READY=1: sent once the new config is applied, or rejected."""
    notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec()}", STATE_WAIT)
    barrier()
    os.kill(main_pid, signal.SIGHUP)


def watchdog_interval() -> float:
    """Seconds between WATCHDOG=1 pings (half systemd's WatchdogSec), or 0 when not asked."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return 0.0
    return int(usec) / 2e6


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "reload" or not (sys.argv[2].isascii() and sys.argv[2].isdigit()):
        sys.exit("usage: python -m runtime.supervisor.sd_notify reload MAINPID")
    try:
        reload(int(sys.argv[2]))
    except OSError as exc:  # no such process: systemd reports the reload failed
        sys.exit(f"cannot signal the supervisor (pid {sys.argv[2]}): {exc.strerror}")
