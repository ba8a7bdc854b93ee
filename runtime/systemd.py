"""The sd_notify protocol: one datagram of KEY=VALUE lines to $NOTIFY_SOCKET.

Written here rather than linked from libsystemd: it is a dozen lines, and a
supervisor not started by systemd simply has no NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True
