"""The unit `jobrt systemd-unit` prints, run by a real systemd.

systemd boots as PID 1 of its own namespaces (tests/systemd_ns.py says how it is kept off
the host: its own /run, /tmp and /var/tmp, every host unit masked but the targets, slices
and journald, no generators). Each test renders the unit for its own config with the CLI,
installs it as jobrt-test.service in that systemd's /run/systemd/system and drives it with
systemctl. The config, database and job files live in a directory under tests/ (not /tmp,
which the namespace has its own of; under /var/lib when the checkout is in /tmp), so the
test process sees the same database as the service; the directory goes with the namespace.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from runtime import connect
from tests import systemd_ns
from tests.conftest import END_STATES, REPO, alive, jobrt, wait_for, write_config

UNIT = "jobrt-test.service"
MODULE = "jobrt_systemd_deploy"  # a job module each test's config lists, in its directory


def write_module(directory: Path, version: str) -> None:
    """The job code a reload deploys: version() returns `version`. (A .pyc is checked by the
    source's mtime in seconds and its size, so versions written within a second differ in length.)"""
    (directory / f"{MODULE}.py").write_text(
        f"from runtime import job\n\n\n@job\ndef version():\n    return {version!r}\n")


@pytest.fixture(scope="module")
def systemd(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("booting systemd in namespaces needs root")
    reason = systemd_ns.missing_prerequisites()
    if reason:
        if os.environ.get("CI", "") not in ("", "0", "false"):  # a skip would hide it
            pytest.fail(f"{reason}; in CI, scripts/test installs systemd")
        pytest.skip(reason)
    # The host's /tmp must come out of this untouched: a file of ours in it, and the
    # systemd-private-* directories PrivateTmp= makes, which must all be the namespace's.
    sentinel = tmp_path_factory.mktemp("systemd-sentinel") / "keep"
    sentinel.write_text("keep")
    private_before = {p for p in os.listdir("/tmp") if p.startswith("systemd-private-")}
    namespace = systemd_ns.SystemdNamespace(systemd_ns.run_directory(REPO / "tests"))
    try:
        namespace.boot()
        yield namespace
    finally:
        namespace.destroy()
    assert not namespace.processes(), "a process of the namespace outlived it"
    assert sentinel.read_text() == "keep", "the host's /tmp was touched"
    assert {p for p in os.listdir("/tmp") if p.startswith("systemd-private-")} <= private_before


class Service:
    def __init__(self, systemd, directory: Path, config: Path, unit: str):
        self.systemd, self.directory, self.config, self.unit = systemd, directory, config, unit

    def show(self, *properties):
        return self.systemd.show(UNIT, *properties)

    def journal(self) -> str:
        return self.systemd.journal(UNIT)

    def supervisor(self, q):
        """The supervisor's heartbeat row (the only one)."""
        rows = q.storage.supervisors()
        return rows[0] if len(rows) == 1 else None


@pytest.fixture
def service(systemd, request):
    """jobrt-test.service, from `jobrt systemd-unit` for a fresh config; stopped afterwards."""
    directory = systemd.run_dir / request.node.name
    directory.mkdir()
    write_module(directory, "v0")
    config = write_config(directory, pools={"default": {"workers": 2, "grace": 1}},
                          jobs={"modules": ["jobs.examples", MODULE], "path": [str(REPO), str(directory)]})
    code, unit, err = jobrt("systemd-unit", "--config", config)
    assert code == 0, err
    systemd.install(UNIT, unit)
    service = Service(systemd, directory, config, unit)
    yield service
    if systemd.show(UNIT, "ActiveState")["ActiveState"] not in ("inactive", "failed"):
        systemd.systemctl("stop", UNIT, check=False)
    systemd.systemctl("reset-failed", UNIT, check=False)
    for path in (systemd.root / "run/systemd/system").glob(UNIT + "*"):
        if path.is_dir():
            for dropin in path.iterdir():
                dropin.unlink()
            path.rmdir()
        else:
            path.unlink()
    systemd.systemctl("daemon-reload")


def run_job(q, name, *args):
    job_id = q.enqueue(name, *args)
    record = wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 30, name)
    assert record.state == "succeeded", record.error
    return record.result


def stopped_cleanly(service) -> bool:
    """The unit ended with Result=success. A unit that fails (an exit status other than 0, a
    stop timeout, a watchdog kill) stays loaded as "failed" with its Result; a clean one is
    "inactive", and systemd may already have unloaded it (then its other properties, such
    as ExecMainStatus, read as defaults): hence no more than these two."""
    shown = service.show("ActiveState", "Result")
    assert shown == {"ActiveState": "inactive", "Result": "success"}, service.journal()
    return True


def start_escaping_job(service, q):
    """(job id, pid in the namespace, host process) of what a job started in a session of its
    own, which then hangs, as the job does."""
    pid_file = service.directory / "escaped.pid"
    job_id = q.enqueue("jobs.examples:escape_and_hang", str(pid_file))
    ns_pid = wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the pid file")
    return job_id, ns_pid, wait_for(lambda: service.systemd.host_process(int(ns_pid)), 30, "the escaped process")


def worker_pids(row) -> dict[int, str]:
    return {w["pid"]: w["state"] for w in row.info.get("workers", [])} if row else {}


def test_the_rendered_unit_is_the_hardened_one(service):
    """What systemd runs below: absolute ExecStart beside this interpreter, PrivateTmp kept
    (the database is not under /tmp; unless the checkout is, which the service reads its
    program and jobs from), and systemd reads it as written."""
    exec_start = next(line for line in service.unit.splitlines() if line.startswith("ExecStart="))
    program = exec_start.split("=", 1)[1].split()[0]
    assert os.path.dirname(program) == os.path.dirname(os.path.abspath(sys.executable))
    private_tmp = "no" if systemd_ns.under_tmp(REPO) else "yes"
    assert ("PrivateTmp=yes" in service.unit) == (private_tmp == "yes") and "ProtectSystem=full" in service.unit
    shown = service.show("Type", "NotifyAccess", "KillMode", "TimeoutStopUSec", "Restart",
                         "PrivateTmp", "ProtectSystem", "ProtectHome", "NoNewPrivileges",
                         "WorkingDirectory", "LoadState")
    assert shown == {"Type": "notify", "NotifyAccess": "exec", "KillMode": "mixed",
                     "TimeoutStopUSec": "16s", "Restart": "on-failure",
                     "PrivateTmp": private_tmp, "ProtectSystem": "full", "ProtectHome": "read-only",
                     "NoNewPrivileges": "yes", "WorkingDirectory": str(service.directory),
                     "LoadState": "loaded"}
    verify = service.systemd.run("systemd-analyze", "verify", f"/run/systemd/system/{UNIT}", check=False)
    assert verify.returncode == 0 and not verify.stdout + verify.stderr, verify.stdout + verify.stderr


def test_start_status_job_reload_and_stop(service):
    systemd = service.systemd
    systemd.systemctl("start", UNIT)  # Type=notify: returns once READY=1 came
    shown = service.show("ActiveState", "SubState", "MainPID", "NRestarts", "WatchdogUSec")
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), service.journal()
    assert shown["WatchdogUSec"] == "30s"
    main_pid = int(shown["MainPID"])
    with connect(config=str(service.config)) as q:
        # READY=1 is sent once the workers run and the first heartbeat is written: no wait.
        row = service.supervisor(q)
        assert row is not None and row.pid == main_pid, service.journal()
        assert len(worker_pids(row)) == 2
        wait_for(lambda: "workers busy" in service.show("StatusText")["StatusText"], 30, "a STATUS line")

        assert run_job(q, "jobs.examples:add", 2, 3) == 5

        old = set(worker_pids(service.supervisor(q)))
        systemd.systemctl("reload", UNIT)
        new = wait_for(lambda: (pids := worker_pids(service.supervisor(q))) and not old & set(pids)
                       and len(pids) == 2 and pids, 30, "the workers to be replaced")
        assert all(state != "stopping" for state in new.values())
        wait_for(lambda: service.show("ActiveState", "SubState") == {"ActiveState": "active",
                                                                     "SubState": "running"},
                 30, "the reload to end (READY=1)")
        assert service.show("MainPID", "NRestarts") == {"MainPID": str(main_pid), "NRestarts": "0"}
        assert run_job(q, "jobs.examples:add", 4, 5) == 9

    systemd.systemctl("stop", UNIT)
    assert stopped_cleanly(service)


def test_reload_returns_once_the_new_job_code_is_in_charge(service):
    """`systemctl reload` is how a deploy ends: a job enqueued once it returns must run the
    new code, and a rejected reload must already say so. So reload may return only after the
    supervisor has applied (READY=1) or rejected the new config, never merely after SIGHUP
    was sent."""
    systemd = service.systemd
    systemd.systemctl("start", UNIT)
    with connect(config=str(service.config)) as q:
        assert run_job(q, f"{MODULE}:version") == "v0"
        for n in range(1, 11):  # with a SIGHUP-only ExecReload, about one reload in five lost the race
            write_module(service.directory, f"v{n}" + "!" * n)
            systemd.systemctl("reload", UNIT)
            assert run_job(q, f"{MODULE}:version") == f"v{n}" + "!" * n, service.journal()
        (service.directory / f"{MODULE}.py").write_text("raise ImportError('a broken deploy')\n")
        systemd.systemctl("reload", UNIT)
        shown = service.show("ActiveState", "SubState", "StatusText")
        assert (shown["ActiveState"], shown["SubState"]) == ("active", "running")
        assert shown["StatusText"].startswith("reload rejected: its job modules do not import")
        assert run_job(q, f"{MODULE}:version") == "v10" + "!" * 10  # the running code stays
    systemd.systemctl("stop", UNIT)
    assert stopped_cleanly(service)


def test_stop_kills_what_a_job_left_behind(service):
    """`systemctl stop` leaves nothing a job started, and is clean. KillMode=mixed sends
    SIGTERM to the supervisor alone; after its pool's grace it kills the hanging job's
    process group, and, as subreaper, the process the job started in a session of its own,
    which it adopted when that worker died. systemd's SIGKILL to the rest of the cgroup
    finds nothing left; when the supervisor cannot clean up, it does: the next test."""
    systemd = service.systemd
    systemd.systemctl("start", UNIT)
    with connect(config=str(service.config)) as q:
        job_id, ns_pid, escaped = start_escaping_job(service, q)
        assert alive(escaped)
        assert os.getsid(escaped.pid) == escaped.pid  # a session of its own
        cgroup = Path(f"/proc/{escaped.pid}/cgroup").read_text()
        assert cgroup.rstrip().endswith(f"/system.slice/{UNIT}"), cgroup  # in the unit's cgroup

        systemd.systemctl("stop", UNIT)
        assert not alive(escaped), service.journal()
        assert stopped_cleanly(service)
        record = q.status(job_id)
        assert (record.state, record.attempts) == ("pending", 0), record  # returned, not counted


def test_after_a_crash_systemd_kills_what_was_left_and_restarts(service):
    """The supervisor SIGKILLed: nothing of jobrt can clean up now. KillMode=mixed has
    systemd SIGKILL everything left in the unit's cgroup (workers, and the process a job
    started in a session of its own), and Restart=on-failure starts a new supervisor."""
    systemd = service.systemd
    systemd.systemctl("start", UNIT)
    with connect(config=str(service.config)) as q:
        job_id, ns_pid, escaped = start_escaping_job(service, q)
        old_main = service.show("MainPID")["MainPID"]
        supervisor = systemd.host_process(int(old_main))
        workers = [systemd.host_process(pid) for pid in worker_pids(service.supervisor(q))]
        assert all(workers) and alive(escaped) and alive(supervisor)
        supervisor.kill()
        for process in [escaped, *workers]:
            wait_for(lambda: not alive(process), 30, f"{process.pid} to be killed")
        # By systemd, not by the next supervisor (which kills what its dead predecessor's
        # jobs left, once it starts): systemd says so.
        said = re.compile(rf"Killing process {ns_pid} \(.*\) with signal SIGKILL")
        wait_for(lambda: said.search(service.journal()), 30, "systemd's word that it killed it")
        wait_for(lambda: service.show("ActiveState", "SubState", "NRestarts")
                 == {"ActiveState": "active", "SubState": "running", "NRestarts": "1"},
                 60, "the restart")
        assert service.show("MainPID")["MainPID"] != old_main
        # The new supervisor rescued the job and runs it again (RELIABILITY.md: a job whose
        # supervisor died during its last try runs once more than `tries`).
        record = wait_for(lambda: (r := q.status(job_id)).attempts == 2 and r, 30, "the rescued job")
        assert "died" in record.error, record
    systemd.systemctl("stop", UNIT)
    assert stopped_cleanly(service)


def test_the_watchdog_is_fed_from_the_loop(service):
    """WATCHDOG=1 pings reach systemd: with the interval cut to 2 s by a drop-in (the unit's
    own 30 s would make this test wait 15 s for one ping), a ping arrives after the first
    deadline would have passed without pings, and the supervisor is the same process."""
    systemd = service.systemd
    systemd.install(f"{UNIT}.d/watchdog.conf", "[Service]\nWatchdogSec=2\n")
    systemd.systemctl("start", UNIT)
    shown = service.show("WatchdogUSec", "MainPID", "WatchdogTimestampMonotonic")
    assert shown["WatchdogUSec"] == "2s"
    # Reset at READY=1 (or by a ping since): without pings, systemd kills it 2 s later.
    deadline = int(shown["WatchdogTimestampMonotonic"]) + 2_000_000
    wait_for(lambda: int(service.show("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]) > deadline,
             30, "a watchdog ping after the first interval")
    after = service.show("ActiveState", "SubState", "MainPID", "NRestarts")
    assert after == {"ActiveState": "active", "SubState": "running", "MainPID": shown["MainPID"],
                     "NRestarts": "0"}, service.journal()
    systemd.systemctl("stop", UNIT)
    assert stopped_cleanly(service)
