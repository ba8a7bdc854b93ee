"""A supervisor whose PostgreSQL host is a name, when its DNS server stops answering: the
name is looked up within [storage] call_timeout (runtime/storage/pghosts.py), so while it
reconnects the event loop still kills a job at its deadline and answers SIGTERM. Before,
libpq's getaddrinfo waited as long as resolv.conf said (here 5 tries of 30 s).

The hosts: tests/netns.py's namespaces db (PostgreSQL on its address) and host (the
supervisor), with /etc files of their own for host: its hosts file names the database
pg.jobrt.test, its resolv.conf sends every other name to a server on its own loopback
that never answers. The test process reaches the database by address."""

from __future__ import annotations

import signal
import sys

import psycopg
import pytest

from runtime import connect
from tests import netns
from tests.conftest import wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

NAME = "pg.jobrt.test"
SILENT_DNS = ("import socket, time\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "s.bind(('127.0.0.1', 53))\n"
              "print('listening', flush=True)\n"
              "time.sleep(3600)\n")


@pytest.fixture
def database():
    """The namespaces db (PostgreSQL) and host; the network and the cluster."""
    with netns.built(["db", "host"]) as network, netns.postgres(network) as cluster:
        yield network, cluster


def test_with_its_dns_server_silent_a_reconnecting_supervisor_still_kills_and_stops(database, tmp_path):
    network, database = database
    by_address = database.create_database()
    by_name = by_address.replace(f"@{network.addresses['db']}:", f"@{NAME}:")
    hosts = f"127.0.0.1 localhost\n{network.addresses['db']} {NAME}\n"
    network.etc("host", "hosts", hosts)
    network.etc("host", "nsswitch.conf", "hosts: files dns\n")
    network.etc("host", "resolv.conf", "nameserver 127.0.0.1\noptions timeout:30 attempts:5\n")
    dns = network.start_in("host", sys.executable, "-c", SILENT_DNS)
    assert dns.stdout.readline().strip() == "listening"
    config = write_config(tmp_path, storage={"url": by_name, "lease": 30, "call_timeout": 0.5},
                          pools={"default": {"workers": 1, "timeout": 3, "grace": 1}})
    log = tmp_path / "supervisor.log"
    supervisor = network.start_supervisor("host", config, log)
    with connect(by_address) as q:
        job = q.enqueue("jobs.examples:sleep", 60)
        wait_for(lambda: q.status(job).state == "running", what="the job to start")
        # The name goes from the hosts file (the DNS server stays silent), and the
        # supervisor's connections are ended: its next call reconnects, looking the name up.
        network.etc("host", "hosts", "127.0.0.1 localhost\n")
        with psycopg.connect(by_address, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE client_addr = %s", (network.addresses["host"],))
        # The loop gave the lookup 0.5 s (libpq's own would have waited 150 s), and went on:
        wait_for(lambda: f"could not look up host '{NAME}' within 0.5 s" in log.read_text(),
                 what="the lookup to give up within call_timeout")
        wait_for(lambda: f"job {job} (jobs.examples:sleep) attempt 1 timed out after 3 s" in log.read_text(),
                 what="the job's deadline to be enforced while the name cannot be looked up")
        supervisor.send_signal(signal.SIGTERM)
        wait_for(lambda: supervisor.poll() is not None, what="SIGTERM to stop the supervisor")
        assert supervisor.returncode == 0, log.read_text()[-3000:]
