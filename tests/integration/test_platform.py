"""Without pidfds (not Linux, or a kernel before 5.3) nothing that forks workers starts:
one clear line says why, before any worker exists."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runtime import JobrtError, Pool, connect
from tests.conftest import REPO, write_config

NO_PIDFD = "import os, sys; del os.pidfd_open; from runtime.cli.main import main; sys.exit(main(sys.argv[1:]))"


def test_a_pool_without_pidfds_says_it_needs_linux(monkeypatch):
    monkeypatch.delattr(os, "pidfd_open")
    with pytest.raises(JobrtError, match=r"need Linux 5\.3 or newer"):
        Pool(1)


def test_jobrt_start_without_pidfds_says_it_needs_linux_and_clients_still_work(tmp_path):
    config = write_config(tmp_path)
    started = subprocess.run([sys.executable, "-c", NO_PIDFD, "start", "--config", str(config)],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert started.returncode == 1
    assert "need Linux 5.3 or newer" in started.stderr and started.stderr.count("\n") == 1
    enqueued = subprocess.run([sys.executable, "-c", NO_PIDFD, "enqueue", "--config", str(config),
                               "jobs.examples:add", "--args", "[1, 2]"],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
    assert enqueued.returncode == 0, enqueued.stderr
    with connect(config=str(config)) as q:
        assert q.status(int(enqueued.stdout)).state == "pending"
