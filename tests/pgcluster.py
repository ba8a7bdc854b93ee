"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp dir, unix socket only,
or also TCP on one address inside a network namespace (tests/netns.py's test hosts).

As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
Where PostgreSQL is not installed the tests that need it are skipped with the
reason, except in CI (CI=true), where .ci/run installs it and a skip would hide
a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest


def _bindir() -> str | None:
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


class Cluster:
    def __init__(self, durable: bool = False, netns: str | None = None, listen: str | None = None):
        """durable=False trades crash safety for test speed (fsync off); benchmarks pass True.
        With `netns`, initdb and pg_ctl run in that network namespace (`ip netns exec`), and with
        `listen` the server also takes TCP connections on that address, port 5432, trusting the
        clients of the subnets it is on (pg_hba `samenet`): url() then names that address."""
        self.durable = durable
        self.netns, self.listen = netns, listen
        bindir = _bindir()
        if bindir is None:
            reason = "PostgreSQL is not installed (no initdb): apt-get install postgresql"
            if os.environ.get("CI"):
                pytest.fail(f"{reason}; .ci/run should have installed it")
            pytest.skip(reason)
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="jobrt-pg-")
        self.data = os.path.join(self.root, "data")
        self.socket_dir = self.root
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o755)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        if listen:
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as hba:
                hba.write("host all all samenet trust\n")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        command = [os.path.join(self.bindir, tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-k {self.socket_dir} -c listen_addresses='{self.listen or ''}' -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.root, "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def postmaster_pid(self) -> int:
        """The running server's postmaster (the first line of its postmaster.pid)."""
        with open(os.path.join(self.data, "postmaster.pid")) as file:
            return int(file.readline())

    def url(self, dbname: str = "postgres") -> str:
        if self.listen:
            return f"postgresql://postgres@{self.listen}:5432/{dbname}"
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
