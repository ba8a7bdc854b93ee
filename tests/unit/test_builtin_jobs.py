"""jobrt's own jobs (runtime.bench_jobs): in every registry, and their names reserved."""

from __future__ import annotations

import sys
import time

import pytest

from runtime.bench_jobs import NOOP
from runtime.errors import ConfigError
from runtime.registry import collect


def test_every_registry_holds_the_bench_job():
    assert NOOP in collect([])
    assert NOOP in collect(["jobs.examples"])
    before = time.time()
    assert before <= collect([])[NOOP].func() <= time.time()  # when it started


@pytest.mark.parametrize("name", [NOOP, "jobrt.mine:x"])
def test_a_user_job_cannot_take_a_name_of_jobrt(tmp_path, monkeypatch, name):
    (tmp_path / "squatter.py").write_text(
        f"from runtime import job\n\n@job(name={name!r})\ndef mine():\n    pass\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # collect() puts the directory on it
    try:
        with pytest.raises(ConfigError) as caught:
            collect(["squatter"], [str(tmp_path)], "supervisor.toml")
    finally:
        sys.modules.pop("squatter", None)
    assert f"job {name!r} (in squatter): names starting with 'jobrt.' are jobrt's own" in str(caught.value)
    assert "jobs.modules" in str(caught.value)
