"""The host names of a PostgreSQL url looked up within a bound, for the supervisor.

libpq, and psycopg before it, look a host name up with getaddrinfo, which waits as long as
the resolver's own settings say (resolv.conf: 5 s a try, two tries, per name server), and
no connect_timeout covers that: with its DNS server gone, a supervisor reconnecting to
`db.example` sat 10 to 30 s in one call while its jobs' deadlines passed. So a supervisor
looks each name up in a child process it waits for at most its call bound, and gives libpq
the addresses (hostaddr), which it then connects to without looking anything up.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time

import psycopg

# Run by `python -I -S`: no site, no user paths; one address a line.
_LOOK_UP = ("import socket, sys\n"
            "for found in socket.getaddrinfo(sys.argv[1], sys.argv[2], proto=socket.IPPROTO_TCP,\n"
            "                                type=socket.SOCK_STREAM):\n"
            "    print(found[4][0])\n")


class Unresolved(psycopg.OperationalError):
    """No host name of the url could be looked up (in time)."""


def pinned(params: dict, bound: float) -> dict:
    """The host, hostaddr and port keywords that send libpq to the addresses of the names
    in `params` (a conninfo dict: the url's and the PG* environment's), each name looked
    up within what is left of `bound` seconds; {} when no host is a name (a unix socket
    directory, an IP address, or one given its hostaddr). A name that cannot be looked up
    is left out, as psycopg leaves it out; Unresolved when that leaves none."""
    hosts = (params.get("host") or "").split(",")
    if not any(_is_name(host) for host in hosts):
        return {}
    ports = (params.get("port") or "").split(",")
    ports = ports * len(hosts) if len(ports) == 1 else ports
    given = (params.get("hostaddr") or "").split(",")
    given = given if len(given) == len(hosts) else [""] * len(hosts)
    deadline = time.monotonic() + bound
    out: list[tuple[str, str, str]] = []
    failures = []
    for host, port, address in zip(hosts, ports, given):
        if address or not _is_name(host):
            out.append((host, address, port))
            continue
        try:
            out += [(host, found, port) for found in _look_up(host, port, deadline, bound)]
        except Unresolved as exc:
            failures.append(str(exc))
    if not out:
        raise Unresolved("; ".join(failures))
    return {"host": ",".join(h for h, _, _ in out), "hostaddr": ",".join(a for _, a, _ in out),
            "port": ",".join(p for _, _, p in out)}


def _is_name(host: str) -> bool:
    if not host or host.startswith("/") or host[1:2] == ":":  # a socket directory (or C:\...)
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _look_up(host: str, port: str, deadline: float, bound: float) -> list[str]:
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LOOK_UP, host, port or "5432"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise Unresolved(f"could not look up host {host!r} within {bound:g} s ([storage] "
                         f"call_timeout): its DNS server does not answer") from None
    found = list(dict.fromkeys(out.split()))
    if child.returncode != 0 or not found:
        reason = (err.strip().splitlines() or ["no address"])[-1]
        raise Unresolved(f"could not look up host {host!r}: {reason}")
    return found
