"""Which imported modules are the project's: what a reload imports anew and --reload watches."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import orjson

import runtime.registry
from runtime.source_files import project_modules, watched_files
from tests.conftest import REPO


def test_the_projects_modules_are_those_outside_the_interpreter_site_packages_and_jobrt(tmp_path, monkeypatch):
    (tmp_path / "mine_helper.py").write_text("VALUE = 1\n")
    (tmp_path / "mine_jobs.py").write_text("import mine_helper\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("mine_jobs")
        found = project_modules()
        assert found["mine_jobs"] == os.path.realpath(tmp_path / "mine_jobs.py")
        assert found["mine_helper"] == os.path.realpath(tmp_path / "mine_helper.py")
        for name in (json.__name__, orjson.__name__, runtime.registry.__name__, "__main__"):
            assert name not in found  # the standard library, site-packages, jobrt itself
        assert watched_files(["mine_jobs"]) == sorted({*found.values()})
    finally:
        for name in ("mine_jobs", "mine_helper"):
            sys.modules.pop(name, None)


def test_a_reimport_brings_an_edited_helper_of_a_job_module(tmp_path):
    """In a process of its own: a reimport forgets every project module, tests' included."""
    (tmp_path / "reimported_helper.py").write_text("VALUE = 'old'\n")
    (tmp_path / "reimported_jobs.py").write_text(
        "from runtime import job\nimport reimported_helper\n\n"
        "@job\ndef value():\n    return reimported_helper.VALUE\n")
    script = textwrap.dedent(f"""
        import pathlib
        from runtime.registry import collect, reimport
        print(collect(["reimported_jobs"], [{str(tmp_path)!r}])["reimported_jobs:value"].func())
        pathlib.Path({str(tmp_path / "reimported_helper.py")!r}).write_text("VALUE = 'new, longer'")
        print(reimport(["reimported_jobs"], [{str(tmp_path)!r}])["reimported_jobs:value"].func())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.stdout.split("\n")[:2] == ["old", "new, longer"], result.stderr
