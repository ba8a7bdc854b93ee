"""Operating jobrt from the command line: health, workers, systemd-unit, --json everywhere."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from runtime.storage import NewJob, Outcome, open_storage
from tests.conftest import REPO, jobrt, wait_for, write_config

NO_WORKER_CHECK = {"workers_critical": 0}


def health(config) -> tuple[int, dict]:
    code, out, err = jobrt("health", "--config", config, "--json")
    assert "Traceback" not in err, err
    return code, json.loads(out)


def deployment(tmp_path, **sections):
    """write_config(), and its SQLite database created as `jobrt start` would (the
    read-only commands never create one)."""
    config = write_config(tmp_path, **sections)
    add_jobs(config)
    return config


def add_jobs(config, old_pending: float = 0.0, failed: int = 0) -> None:
    """Jobs no CLI verb makes directly: one due `old_pending` s ago, and failed ones."""
    storage = open_storage("sqlite:///jobs.db", role="client", base_dir=str(config.parent))
    payload = orjson.dumps([[], {}])
    try:
        if old_pending:
            storage.enqueue([NewJob("default", "jobs.examples:echo", payload,
                                    time.time() - old_pending)])
        if failed:
            storage.enqueue([NewJob("doomed", "jobs.examples:echo", payload, 0.0)] * failed)
            claimed = storage.claim("test", ["doomed"], failed, time.time() + 60, time.time())
            storage.settle("test", [Outcome(j.id, j.attempt, "failed", time.time(), error="x")
                                    for j in claimed])
    finally:
        storage.close()


# -- health ------------------------------------------------------------------------

def test_health_is_healthy_with_a_running_supervisor_and_nothing_pending(tmp_path,
                                                                        start_supervisor):
    config = write_config(tmp_path)
    start_supervisor(config)
    code, report = wait_for(lambda: (lambda r: r[0] == 0 and r)(health(config)),
                            what="a healthy report")
    assert report["status"] == "healthy" and report["reasons"] == []
    assert report["checks"]["workers"] == {"status": "healthy", "value": 2, "warning": 0,
                                           "critical": 1}
    assert report["checks"]["pending"]["value"] == 0
    assert report["checks"]["oldest_pending"]["value"] is None
    code, out, _ = jobrt("health", "--config", config)
    assert code == 0 and out.startswith("healthy: 2 live workers, 0 due jobs")


def test_health_is_critical_without_a_supervisor(tmp_path):
    config = deployment(tmp_path)
    code, out, err = jobrt("health", "--config", config)
    assert code == 2, err
    assert out.splitlines() == ["critical: no live workers: is `jobrt start` running?"]
    code, report = health(config)
    assert code == 2 and report["status"] == "critical"
    assert report["checks"]["workers"]["status"] == "critical"
    assert set(report["checks"]) == {"workers", "pending", "oldest_pending", "failed",
                                     "unserved_queues", "unregistered_jobs"}
    # Without a live supervisor nothing runs: one reason says so, not one per queue and job.
    assert report["checks"]["unserved_queues"]["value"] is None


def test_health_warns_then_turns_critical_as_the_backlog_grows(tmp_path):
    config = deployment(tmp_path, health={**NO_WORKER_CHECK, "pending_warning": 2,
                                          "pending_critical": 4})
    assert health(config)[0] == 0
    for _ in range(3):
        assert jobrt("enqueue", "--config", config, "jobs.examples:echo")[0] == 0
    assert jobrt("enqueue", "--config", config, "jobs.examples:echo", "--delay", "3600")[0] == 0
    code, out, _ = jobrt("health", "--config", config)
    assert code == 1  # the delayed job is not waiting yet
    assert out.splitlines() == ["warning: 3 due jobs waiting (warning at 2)"]
    assert jobrt("enqueue", "--config", config, "jobs.examples:echo")[0] == 0
    code, report = health(config)
    assert code == 2 and report["status"] == "critical"
    assert report["checks"]["pending"] == {"status": "critical", "value": 4, "warning": 2,
                                           "critical": 4}
    assert report["reasons"] == ["critical: 4 due jobs waiting (critical at 4)"]


def test_health_judges_the_oldest_due_job_and_the_failed_store(tmp_path):
    config = write_config(tmp_path, health={**NO_WORKER_CHECK, "oldest_pending_warning": 300,
                                            "oldest_pending_critical": 3600})
    add_jobs(config, old_pending=600, failed=3)
    code, report = health(config)
    assert code == 1 and report["checks"]["oldest_pending"]["status"] == "warning"
    assert 600 <= report["checks"]["oldest_pending"]["value"] < 3600
    assert report["checks"]["failed"] == {"status": "healthy", "value": 3, "warning": 100,
                                          "critical": 0}
    write_config(tmp_path, health={**NO_WORKER_CHECK, "oldest_pending_warning": 0,
                                   "failed_warning": 2, "failed_critical": 3})
    code, out, _ = jobrt("health", "--config", config)
    assert code == 2
    assert out.splitlines() == ["critical: 3 jobs in the failed-jobs store (critical at 3)"]
    write_config(tmp_path, health={**NO_WORKER_CHECK, "oldest_pending_warning": 0,
                                   "failed_warning": 0, "pending_warning": 0})
    assert health(config)[0] == 0  # every check that could fire is off


def test_health_of_unreadable_storage_is_critical(tmp_path):
    config = write_config(tmp_path, storage={"url": "sqlite:////proc/no/such/dir/jobs.db"})
    code, report = health(config)
    assert code == 2 and report["status"] == "critical"
    assert "/proc/no/such/dir/jobs.db" in report["checks"]["storage"]["error"]
    code, out, _ = jobrt("health", "--config", config)
    assert code == 2 and out.startswith("critical: storage: ")


def test_health_with_a_bad_config_exits_2_with_one_line(tmp_path):
    (tmp_path / "supervisor.toml").write_text("[health]\npending_warning = -1\n")
    code, out, err = jobrt("health", "--config", tmp_path / "supervisor.toml")
    assert code == 2 and out == ""
    assert "health.pending_warning" in err and len(err.strip().splitlines()) == 1
    code, out, err = jobrt("health", "--config", tmp_path / "supervisor.toml", "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1
    report = json.loads(out)  # a monitor reading JSON sees critical too
    assert report["status"] == "critical" and report["exit"] == 2
    assert "health.pending_warning" in report["error"] and report["reasons"][0].startswith("critical: ")
    code, out, _ = jobrt("health", "--help")
    assert code == 0 and "2 critical" in out and "config error" in out


def test_health_with_a_bad_command_line_is_critical_in_json_too(tmp_path):
    config = write_config(tmp_path)
    code, out, err = jobrt("health", "--config", config, "--json", "--verbose")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--verbose" in err
    assert json.loads(out)["status"] == "critical"


# -- jobs no live supervisor would run ------------------------------------------------------

def heartbeat(config, pools: dict, jobs: list) -> None:
    """A live supervisor's heartbeat as `jobrt start` writes it, without running one."""
    storage = open_storage("sqlite:///jobs.db", role="client", base_dir=str(config.parent))
    try:
        now = time.time()
        storage.heartbeat("sup-1", "host", 1, now, {
            "workers": [{"pid": 2, "pool": "default", "state": "idle", "jobs": 0, "rss": 0}],
            "pools": {name: {"queues": queues, "workers": 1} for name, queues in pools.items()},
            "jobs": jobs}, now, now + 30)
    finally:
        storage.close()


def test_health_and_status_flag_pending_jobs_no_live_supervisor_would_run(tmp_path):
    config = deployment(tmp_path)
    storage = open_storage("sqlite:///jobs.db", role="client", base_dir=str(tmp_path))
    payload = orjson.dumps([[], {}])
    try:
        storage.enqueue([NewJob("emails", "__main__:send_email", payload, time.time())] * 3
                        + [NewJob("default", "jobs.chaos:quick", payload, time.time() + 3600)] * 2)
    finally:
        storage.close()
    heartbeat(config, {"default": ["high", "default", "low"]}, ["jobs.chaos:slow", "jobs.examples:echo"])
    code, out, _ = jobrt("health", "--config", config)
    assert code == 1
    assert out.splitlines() == [
        "warning: 3 pending jobs in queues no live pool serves: emails (3)",
        "warning: 5 pending jobs whose name no live supervisor registers: "
        "__main__:send_email (3), jobs.chaos:quick (2)"]
    code, report = health(config)
    assert code == 1 and report["checks"]["unserved_queues"]["queues"] == {"emails": 3}
    assert report["checks"]["unregistered_jobs"]["jobs"] == {"__main__:send_email": 3,
                                                             "jobs.chaos:quick": 2}
    code, out, _ = jobrt("status", "--config", config)
    lines = out.splitlines()
    assert code == 0
    problems = lines[lines.index(next(l for l in lines if l.startswith("emails"))) + 1:][:3]
    assert problems == ["queue emails: 3 pending jobs, but no live pool serves it",
                        "job __main__:send_email: 3 pending, no live supervisor registers it",
                        "job jobs.chaos:quick: 2 pending, no live supervisor registers it"]
    code, out, _ = jobrt("status", "--config", config, "--json")
    assert code == 0 and json.loads(out)["problems"] == [
        {"kind": "queue", "queue": "emails", "pending": 3, "message": problems[0]},
        {"kind": "job", "name": "__main__:send_email", "pending": 3, "message": problems[1]},
        {"kind": "job", "name": "jobs.chaos:quick", "pending": 2, "message": problems[2]}]
    heartbeat(config, {"default": ["default", "emails"]},
              ["__main__:send_email", "jobs.chaos:quick", "jobs.examples:echo"])
    code, report = health(config)
    assert code == 0 and report["checks"]["unserved_queues"]["value"] == 0, report
    code, out, _ = jobrt("status", "--config", config, "--json")
    assert json.loads(out)["problems"] == []


def test_status_without_a_live_supervisor_lists_no_problems(tmp_path):
    config = deployment(tmp_path)
    assert jobrt("enqueue", "--config", config, "jobs.examples:echo")[0] == 0
    code, out, _ = jobrt("status", "--config", config, "--json")
    assert code == 0 and json.loads(out)["problems"] == []
    code, out, _ = jobrt("status", "--config", config)
    assert "no pool serves" not in out and "no live workers" in out


@pytest.mark.parametrize("argv, message", [
    (["jobs.examples:echo", "--queue", "emails"],
     "job jobs.examples:echo: queue 'emails' is served by no pool in {config} (pools: default: "
     "high, default, low); add it to a pool's queues or pass _queue= (jobrt enqueue --queue) "
     "naming a queue a pool serves"),
    (["jobs.chaos:quick"], "job 'jobs.chaos:quick' is not in [jobs] modules of {config}, so no "
     "worker would run it; move it into a module listed there (jobs.examples)"),
])
def test_enqueue_refuses_a_job_no_worker_of_the_config_would_run(tmp_path, argv, message):
    config = write_config(tmp_path)
    code, out, err = jobrt("enqueue", "--config", config, *argv)
    assert (code, out) == (2, "") and err == f"jobrt: {message.format(config=config)}\n"
    code, out, err = jobrt("enqueue", "--config", config, *argv, "--json")
    assert code == 2 and json.loads(out) == {"error": message.format(config=config), "exit": 2}
    code, out, _ = jobrt("status", "--config", config, "--json")
    assert json.loads(out)["queues"] == {}  # nothing was stored


# -- only start and enqueue create storage ---------------------------------------------

READ_ONLY = [["status"], ["workers"], ["job", "1"], ["failed", "list"], ["failed", "show", "1"],
             ["failed", "retry", "--all"], ["failed", "forget", "1"], ["failed", "flush"],
             ["clear", "--queue", "default"]]


@pytest.mark.parametrize("command", READ_ONLY)
def test_read_only_commands_never_create_a_sqlite_database(tmp_path, command):
    config = write_config(tmp_path, storage={"url": "sqlite:///no/such/dir/x.db"})
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    code, out, err = jobrt(*command, "--config", config)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.splitlines() == [f"jobrt: SQLite database {missing} does not exist: `jobrt start` "
                                f"or enqueueing a job creates it; check [storage] url"]
    code, out, err = jobrt(*command, "--config", config, "--json")
    assert code == 1 and json.loads(out) == {"error": err.strip().removeprefix("jobrt: "), "exit": 1}
    assert not (tmp_path / "no").exists()


def test_health_of_a_database_not_created_yet_is_critical_and_creates_nothing(tmp_path):
    config = write_config(tmp_path, storage={"url": "sqlite:///no/such/dir/x.db"})
    code, report = health(config)
    assert code == 2 and report["status"] == "critical"
    assert "x.db does not exist" in report["checks"]["storage"]["error"]
    assert not (tmp_path / "no").exists()
    assert jobrt("enqueue", "--config", config, "jobs.examples:echo")[0] == 0  # this one creates it
    code, out, _ = jobrt("status", "--config", config)
    assert code == 0 and "default" in out
    assert (tmp_path / "no" / "such" / "dir" / "x.db").exists()


def test_an_existing_empty_file_is_opened_not_refused(tmp_path):
    (tmp_path / "jobs.db").touch()  # e.g. made by an installer with the right owner and mode
    config = write_config(tmp_path)
    code, out, err = jobrt("status", "--config", config, "--json")
    assert code == 0 and json.loads(out)["queues"] == {}, err


@pytest.mark.parametrize("command", [["status"], ["job", "1"], ["failed", "list"]])
def test_a_postgresql_database_that_does_not_exist_is_exit_1(tmp_path, pg_url, command):
    url = pg_url.replace("/t_", "/missing_t_")
    config = write_config(tmp_path, storage={"url": url})
    code, out, err = jobrt(*command, "--config", config)
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert "does not exist" in err and "Traceback" not in err
    code, report = health(config)
    assert code == 2 and "does not exist" in report["checks"]["storage"]["error"]


# -- workers -----------------------------------------------------------------------

def test_workers_lists_the_live_workers(tmp_path, start_supervisor):
    config = deployment(tmp_path)
    code, out, _ = jobrt("workers", "--config", config)
    assert code == 0 and "no live workers" in out
    assert json.loads(jobrt("workers", "--config", config, "--json")[1]) == []
    start_supervisor(config)

    def workers():
        return json.loads(jobrt("workers", "--config", config, "--json")[1])

    live = wait_for(lambda: len(workers()) == 2 and workers(), what="two live workers")
    for worker in live:
        assert {"pid", "pool", "state", "jobs", "rss", "host", "supervisor"} <= set(worker)
        assert worker["pool"] == "default"
    code, out, _ = jobrt("workers", "--config", config)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    for line in lines:
        assert "pool default" in line and "MiB" in line and "supervisor " in line


def test_every_admin_command_speaks_json(tmp_path):
    config = write_config(tmp_path)
    code, out, _ = jobrt("enqueue", "--config", config, "jobs.examples:echo", "--json")
    assert code == 0
    job_id = json.loads(out)["id"]
    for command in (["status"], ["workers"], ["job", job_id], ["failed", "list"],
                    ["failed", "flush"], ["clear", "--queue", "default"]):
        code, out, err = jobrt(*command, "--config", config, "--json")
        assert code == 0, (command, err)
        document = json.loads(out)  # one document
        if command[0] == "job":
            assert document["id"] == job_id


# -- systemd-unit --------------------------------------------------------------------

# PrivateTmp= hides /tmp from the service: a unit keeps it only when nothing it reads or
# writes is there. The program is this interpreter's `jobrt`, in /tmp when the checkout and
# its .venv are (a CI clone may be); the configs of these tests are kept out of /tmp.
PROGRAM_IN_TMP = os.path.realpath(os.path.dirname(os.path.abspath(sys.executable))).startswith(("/tmp/", "/var/tmp/"))


@pytest.fixture
def unit_dir(tmp_path):
    """A directory for a unit's config outside /tmp (pytest's tmp_path is under it)."""
    directory = REPO / "tests" / f".unit-{tmp_path.name}"
    if str(directory).startswith(("/tmp/", "/var/tmp/")):
        directory = Path("/var/lib") / f"jobrt-test-{os.getpid()}-{tmp_path.name}"
    directory.mkdir(parents=True)
    yield directory
    shutil.rmtree(directory)


def private_tmp_kept(service) -> bool:
    """PrivateTmp=yes, as expected: unless the program runs from /tmp (then it is left out,
    saying why)."""
    if PROGRAM_IN_TMP:
        return "PrivateTmp" not in service
    return service.get("PrivateTmp") == "yes"


def unit(config, *extra) -> configparser.ConfigParser:
    code, out, err = jobrt("systemd-unit", "--config", config, *extra)
    assert code == 0 and "Traceback" not in err, err
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(out)
    return parser


def test_systemd_unit_runs_the_supervisor_under_notify_with_a_stop_timeout(unit_dir):
    tmp_path = unit_dir
    config = write_config(tmp_path, pools={"default": {"grace": 10}, "batch": {"grace": 100.5}},
                          storage={"url": "sqlite:////var/lib/jobrt-test/jobs.db"})
    parsed = unit(config)
    service = parsed["Service"]
    command = service["ExecStart"].split()
    assert os.path.isabs(command[0]) and os.access(command[0], os.X_OK)
    assert command[-3:] == ["start", "--config", str(config)]
    expected = {
        "Type": "notify", "NotifyAccess": "exec",
        "KillMode": "mixed", "TimeoutStopSec": str(101 + 15), "Restart": "on-failure",
        "WatchdogSec": "30", "WorkingDirectory": str(tmp_path), "NoNewPrivileges": "yes",
        "ProtectSystem": "full", "ProtectHome": "read-only",
    }
    assert private_tmp_kept(service)
    assert {key: service.get(key) for key in expected} == expected
    # reload: tell systemd, then SIGHUP; it waits for the supervisor's READY=1
    reload = service["ExecReload"].split()
    assert os.path.isabs(reload[0]) and reload[1:] == ["-m", "runtime.supervisor.sd_notify", "reload", "$MAINPID"]
    assert "User" not in service
    assert parsed["Install"]["WantedBy"] == "multi-user.target"
    assert "After" not in parsed["Unit"]  # SQLite needs no network
    assert unit(config, "--user", "jobrt")["Service"]["User"] == "jobrt"


@pytest.mark.parametrize("url, pool, missing, kept", [
    ("sqlite:////etc/jobrt/jobs.db", {}, "ProtectSystem", "ProtectHome"),
    ("sqlite:////home/ops/jobs.db", {}, "ProtectHome", "ProtectSystem"),
    ("sqlite:////root/jobs.db", {}, "ProtectHome", "PrivateTmp"),
    ("sqlite:////var/tmp/jobs.db", {}, "PrivateTmp", "ProtectHome"),
    ("sqlite:////tmp/jobs.db", {}, "PrivateTmp", "NoNewPrivileges"),
    ("sqlite:////srv/jobs.db", {"user": "nobody"}, "NoNewPrivileges", "PrivateTmp"),
    ("postgresql:///jobs", {}, "PrivateTmp", "ProtectSystem"),  # libpq's socket may be in /tmp
    ("postgresql://jobs@db.example/jobs", {}, "-", "PrivateTmp"),
])
def test_systemd_unit_hardening_never_hides_the_database(unit_dir, url, pool, missing, kept):
    config = write_config(unit_dir, pools={"default": pool}, storage={"url": url})
    service = unit(config)["Service"]
    assert missing not in service
    assert private_tmp_kept(service) if kept == "PrivateTmp" else kept in service
    if url.startswith("postgresql"):
        assert unit(config)["Unit"]["After"] == "network-online.target"


def test_systemd_unit_leaves_private_tmp_out_when_the_config_is_in_tmp(tmp_path):
    """PrivateTmp= would hide the config (and a [jobs] path) from the service: it could not start."""
    config = write_config(tmp_path, storage={"url": "sqlite:////srv/jobs.db"})
    code, out, _ = jobrt("systemd-unit", "--config", config)
    assert code == 0 and "PrivateTmp=" not in out.replace("# PrivateTmp=", "")
    assert "# PrivateTmp= left out:" in out and "is under /tmp, which it would hide" in out


def test_systemd_unit_quotes_paths_and_refuses_bad_users(tmp_path):
    directory = tmp_path / "my jobs 100%"
    directory.mkdir()
    config = write_config(directory)
    service = unit(config)["Service"]
    escaped = str(directory).replace("%", "%%")
    assert service["ExecStart"].endswith(f'start --config "{escaped}/supervisor.toml"')
    assert service["WorkingDirectory"] == escaped
    code, out, err = jobrt("systemd-unit", "--config", config, "--user", "no body")
    assert code == 2 and out == "" and "--user" in err


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    directory = tmp_path / "my jobs 100%"
    directory.mkdir()
    config = write_config(directory, pools={"default": {}, "other": {"user": "nobody"}})
    path = tmp_path / "jobrt.service"
    code, out, err = jobrt("systemd-unit", "--config", config)
    assert code == 0, err
    path.write_text(out)
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for complaint in ("ignoring", "Unknown", "Failed", "not executable"):
        assert complaint not in result.stderr, result.stderr


def test_start_with_postgresql_down_is_an_operational_failure(tmp_path):
    """Exit 1 (the server is not there), not 2 (nothing is wrong with the command or config)."""
    config = write_config(tmp_path, storage={"url": f"postgresql:///jobrt?host={tmp_path}"})  # no server there
    code, out, err = jobrt("start", "--config", config)
    assert code == 1 and out == ""
    assert err.startswith("jobrt: cannot connect to PostgreSQL") and len(err.strip().splitlines()) == 1
