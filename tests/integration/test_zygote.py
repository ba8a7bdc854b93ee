"""Workers come from the zygote (runtime.workers.zygote): cloned as the supervisor's own
children, with a spare ready that the stray sweep leaves alone; and when the zygote dies,
the supervisor forks its workers itself and no job is lost."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

from runtime import connect
from tests.conftest import wait_for, write_config

JOBS = 30


def _zygote(supervisor) -> psutil.Process:
    children = psutil.Process(supervisor.proc.pid).children()
    return next(c for c in children if c.name() == "jobrt-zygote")


def _named(supervisor, name: str) -> int:
    """How many of the supervisor's children bear `name` (one that exits meanwhile: none)."""
    count = 0
    for child in psutil.Process(supervisor.proc.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            count += child.name() == name
    return count


def _drain(config, path) -> set[int]:
    """Run JOBS jobs that record their worker's pid; the pids seen."""
    with connect(config=str(config)) as q:
        ids = [q.enqueue("jobs.examples:append_line", str(path), f"line{n}") for n in range(JOBS)]
        wait_for(lambda: all(q.status(i).state == "succeeded" for i in ids), 60, "every job succeeded")
    lines = path.read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(f"line{n}" for n in range(JOBS))
    return {int(line.split()[3]) for line in lines}


def test_workers_are_the_supervisors_children_cloned_by_the_zygote(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"workers": 2, "max_jobs": 3}})
    supervisor = start_supervisor(config)
    zygote = _zygote(supervisor)
    pids = _drain(config, tmp_path / "runs")
    assert len(pids) >= JOBS // 4  # recycled every 3-4 jobs: many workers came and went
    children = psutil.Process(supervisor.proc.pid).children()
    workers = [c for c in children if c.name() == "jobrt-worker"]
    # 2 workers, and maybe the successor of one close to its max_jobs (a standby)
    assert len(workers) in (2, 3) and all(w.ppid() == supervisor.proc.pid for w in workers)
    # The next worker, cloned ahead of need and adopted. The zygote clones it once the last
    # one was taken, and a fresh clone bears the zygote's name until it renames itself.
    wait_for(lambda: _named(supervisor, "jobrt-spare") == 1 and _named(supervisor, "jobrt-zygote") == 1,
             what="one spare, and the zygote (no clone still unnamed)")
    assert supervisor.stop() == 0
    output = supervisor.output()
    assert "process(es) that jobs started" not in output  # no spare taken for a stray
    assert "zygote" not in output  # it never failed
    assert not zygote.is_running()


def test_when_the_zygote_dies_the_supervisor_forks_workers_itself(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"workers": 2, "max_jobs": 3}})
    supervisor = start_supervisor(config)
    zygote = _zygote(supervisor)
    os.kill(zygote.pid, signal.SIGKILL)
    pids = _drain(config, tmp_path / "runs")
    assert len(pids) >= JOBS // 4
    assert supervisor.stop() == 0
    assert "the zygote that starts workers failed" in supervisor.output()
