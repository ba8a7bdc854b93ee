"""Shared fixtures: a temp supervisor.toml and a real `jobrt start` in a subprocess."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
END_STATES = ("succeeded", "failed", "cancelled")


def pytest_configure(config) -> None:
    """The jobrt pytest plugin (runtime.testing.plugin): loaded by its pytest11 entry point
    once jobrt is installed from this tree, else here, so the suite has its fixtures either
    way (and never registers the plugin twice, which pytest refuses)."""
    manager = config.pluginmanager
    if not manager.has_plugin("jobrt") and not manager.has_plugin("runtime.testing.plugin"):
        import runtime.testing.plugin
        manager.register(runtime.testing.plugin, "jobrt")


def write_config(directory: Path, pools: dict | None = None, storage: dict | None = None,
                 **sections: dict) -> Path:
    """A supervisor.toml in `directory` with a SQLite db beside it and the example jobs;
    `sections` adds whole tables, e.g. health={"pending_warning": 2}."""
    import tomli_w

    pools = pools or {"default": {}}
    document = {
        "storage": {"url": "sqlite:///jobs.db", "lease": 30, **(storage or {})},
        "jobs": {"modules": ["jobs.examples"], "path": [str(REPO)]},
        "pools": {name: {"queues": ["high", "default", "low"], "workers": 2, "timeout": 30,
                         "backoff": 0, "grace": 10, "run_as_root": True, **pool}
                  for name, pool in pools.items()},
        **sections,
    }
    path = directory / "supervisor.toml"
    path.write_text(tomli_w.dumps(document))
    return path


def jobrt(*args, cwd=None) -> tuple[int, str, str]:
    """Run the `jobrt` command as a user would; returns (exit status, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "runtime.cli", *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    return result.returncode, result.stdout, result.stderr


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """Poll `condition` until it returns a truthy value; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def alive(process) -> bool:
    """Running and not a zombie (a dead orphan may wait a while for init to reap it).
    Takes a psutil.Process (safe against pid reuse) or a pid."""
    try:
        if not isinstance(process, psutil.Process):
            process = psutil.Process(process)
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class RunningSupervisor:
    """`jobrt start` as a user runs it, with a fake NOTIFY_SOCKET to know when it is ready."""

    def __init__(self, config: Path, env: dict | None = None, args=()):
        self.config = config
        self.log_path = config.parent / f"supervisor-{time.monotonic_ns()}.log"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # An abstract socket ("@", as systemd allows): no path, so no limit of 108 bytes on
        # deep test directories, and nothing left behind.
        self.notify_path = f"@jobrt-test-{os.getpid()}-{time.monotonic_ns()}"
        self.notify.bind("\0" + self.notify_path[1:])
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, PYTHONUNBUFFERED="1", **(env or {}))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "start", "--config", str(config), "--log-level", "debug",
             *args],
            cwd=config.parent, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_message(self, wanted: bytes, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout  # for the wanted message: others keep coming
        while True:
            self.notify.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                message = self.notify.recv(4096)
            except socket.timeout:
                raise AssertionError(f"supervisor never sent {wanted!r}; log:\n{self.output()}") from None
            if wanted in message:
                return message

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.close()

    def close(self) -> None:
        self.log.close()
        self.notify.close()

    def discard(self) -> None:
        """Teardown: SIGKILL it if it still runs, release its files."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.close()


@pytest.fixture
def start_supervisor():
    """Start supervisors for a test; any left running are stopped afterwards."""
    started: list[RunningSupervisor] = []

    def start(config: Path, env: dict | None = None, args=()) -> RunningSupervisor:
        supervisor = RunningSupervisor(config, env, args)  # args: more `jobrt start` options
        started.append(supervisor)  # before waiting: teardown must kill one that never got ready
        supervisor.wait_message(b"READY=1")
        return supervisor

    yield start
    for supervisor in started:
        supervisor.discard()


@pytest.fixture
def seed() -> int:
    """The seed of a test's random choices: JOBRT_TEST_SEED if set, else a fresh one.
    Printed (pytest shows it with a failure) and given to the `random` module; tests that
    take their own random.Random(seed) should also name it in their assertion messages."""
    text = os.environ.get("JOBRT_TEST_SEED")
    value = int(text) if text else int.from_bytes(os.urandom(4), "big")
    print(f"seed={value} (rerun with JOBRT_TEST_SEED={value})")
    random.seed(value)
    return value


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request) -> dict:
    """The [storage] table of the test's config: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return {"url": "sqlite:///jobs.db"}
    return {"url": request.getfixturevalue("pg_url")}


@pytest.fixture(scope="session")
def pg_cluster():
    from tests.pgcluster import Cluster

    cluster = Cluster()
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster):
    """A fresh, empty database on the session's throwaway PostgreSQL cluster."""
    return pg_cluster.create_database()
