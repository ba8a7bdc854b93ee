"""A disk that fills up under a running supervisor: it says so, keeps results, resumes."""

from __future__ import annotations

import os
import subprocess

import pytest

from runtime import connect
from tests.conftest import END_STATES, wait_for, write_config


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(directory):
    # Unbuffered: a buffered file would try the failed write again on close, and raise there.
    with open(directory / "filler", "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass


def test_disk_full_pauses_the_supervisor_and_it_resumes_by_itself(tmp_path, small_disk, start_supervisor):
    config = write_config(tmp_path, storage={"url": f"sqlite:///{small_disk}/jobs.db"})
    with connect(config=str(config)) as q:
        ids = q.enqueue_many([("jobs.examples:blob", (16,))] * 200)  # 3.2 MB of results
        supervisor = start_supervisor(config)
        wait_for(lambda: q.counts()["default"]["succeeded"] >= 10, what="some results stored")
        fill(small_disk)
        wait_for(lambda: "storage unavailable" in supervisor.output(), what="the outage to be reported")
        os.remove(small_disk / "filler")
        records = [wait_for(lambda: (r := q.status(i)).state in END_STATES and r, 60) for i in ids]
    assert {(r.state, len(r.result)) for r in records} == {("succeeded", 16 * 1024)}
    output = supervisor.output()
    assert "disk is full" in output and "storage is back" in output
    assert supervisor.proc.poll() is None
