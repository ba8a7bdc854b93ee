"""pghosts.pinned: the host names of a PostgreSQL url looked up (here only through the
hosts file: no test contacts a DNS server), handed to libpq as hostaddr beside each host,
with sockets, addresses and hosts given a hostaddr left as they are."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_attempts

from runtime.storage import pghosts


def test_nothing_to_look_up_changes_nothing():
    for host in ("", "/run/postgresql", "10.1.2.3", "::1", "/tmp,10.0.0.1"):
        assert pghosts.pinned({"host": host}, 2.0) == {}


def test_names_get_their_addresses_beside_sockets_and_addresses():
    pinned = pghosts.pinned({"host": "/run/pg,localhost,10.0.0.1", "port": "5432,5433,5434"}, 5.0)
    rows = list(zip(*(pinned[key].split(",") for key in ("host", "hostaddr", "port"))))
    assert rows[0] == ("/run/pg", "", "5432") and rows[-1] == ("10.0.0.1", "", "5434")
    assert ("localhost", "127.0.0.1", "5433") in rows[1:-1]
    assert {row[0] for row in rows[1:-1]} == {"localhost"}
    # libpq gets one attempt per address, and psycopg looks nothing up again
    params = psycopg.conninfo.conninfo_to_dict("postgresql://u@x/db", **pinned)
    attempts = conninfo_attempts(params)
    assert [(a["host"], a.get("hostaddr")) for a in attempts][1:-1] == [(h, a) for h, a, _ in rows[1:-1]]


def test_one_port_serves_every_host_and_a_given_hostaddr_is_kept():
    pinned = pghosts.pinned({"host": "localhost,db", "hostaddr": "127.0.0.1,10.9.9.9", "port": "6543"}, 2.0)
    assert pinned == {"host": "localhost,db", "hostaddr": "127.0.0.1,10.9.9.9", "port": "6543,6543"}
