"""Who jobs run as, with which limits, and what they cannot see or run."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest

from runtime import connect
from tests.conftest import END_STATES, REPO, wait_for, write_config

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="privilege dropping needs the tests to run as root")


def whoami(config):
    with connect(config=str(config)) as q:
        job_id = q.enqueue("jobs.examples:whoami")
        record = wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, what="whoami")
    assert record.state == "succeeded", record.error
    return record.result


@as_root
def test_workers_drop_to_the_configured_user(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"user": "nobody", "run_as_root": False}})
    start_supervisor(config)
    nobody = pwd.getpwnam("nobody")
    seen = whoami(config)
    assert (seen["uid"], seen["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    assert 0 not in seen["groups"]


def test_no_core_dumps_by_default_limits_applied_and_no_storage_password(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"max_open_files": 256}})
    start_supervisor(config, env={"PGPASSWORD": "s3cret"})
    seen = whoami(config)
    assert (seen["core"], seen["nofile"], seen["pgpassword"]) == (0, 256, None)


def start_fails(config):
    result = subprocess.run([sys.executable, "-m", "runtime.cli", "start", "--config", str(config)],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    return result.returncode, result.stderr


@as_root
def test_root_without_a_user_is_refused_unless_allowed(tmp_path):
    config = write_config(tmp_path, pools={"default": {"run_as_root": False}})
    code, err = start_fails(config)
    assert code == 2 and "pools.default.user" in err and "run_as_root" in err and "Traceback" not in err


@as_root
def test_unknown_user_is_a_config_error(tmp_path):
    config = write_config(tmp_path, pools={"default": {"user": "no-such-user-here"}})
    code, err = start_fails(config)
    assert code == 2 and "no-such-user-here" in err and "Traceback" not in err
