"""SIGHUP reloads config and job code without downtime; SIGTTIN/SIGTTOU resize; systemd messages."""

from __future__ import annotations

import signal
import textwrap

import tomli_w

from runtime import connect
from tests.conftest import END_STATES, REPO, wait_for, write_config


def result_of(q, name, *args):
    job_id = q.enqueue(name, *args)
    record = wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 30, name)
    assert record.state == "succeeded", record.error
    return record.result


def live_workers(q):
    rows = [r for r in q.storage.supervisors()]
    return [w for r in rows for w in r.info.get("workers", []) if w["state"] not in ("stopping", "standby")]


def write_module(directory, version):
    (directory / "reloadable.py").write_text(textwrap.dedent(f"""
        from runtime import job

        @job
        def version():
            return {version!r}
    """))


def config_with_reloadable(directory):
    """A config whose job modules include reloadable.py (version "first") in `directory`."""
    write_module(directory, "first")
    config = directory / "supervisor.toml"
    document = {"storage": {"url": "sqlite:///jobs.db"},
                "jobs": {"modules": ["jobs.examples", "reloadable"], "path": [str(REPO), str(directory)]},
                "pools": {"default": {"workers": 1, "run_as_root": True}}}
    config.write_text(tomli_w.dumps(document))
    return config, document


def test_sighup_brings_new_job_code_and_pool_sizes(tmp_path, start_supervisor):
    config, document = config_with_reloadable(tmp_path)
    supervisor = start_supervisor(config)
    with connect(config=str(config)) as q:
        assert result_of(q, "reloadable:version") == "first"
        write_module(tmp_path, "second, longer")
        document["pools"]["default"]["workers"] = 3
        config.write_text(tomli_w.dumps(document))
        supervisor.signal(signal.SIGHUP)
        reloading = supervisor.wait_message(b"RELOADING=1")
        assert b"MONOTONIC_USEC=" in reloading
        supervisor.wait_message(b"READY=1")
        assert result_of(q, "reloadable:version") == "second, longer"
        wait_for(lambda: len(live_workers(q)) == 3, what="three workers after the reload")
    assert "configuration reloaded" in supervisor.output()


def test_a_bad_config_on_sighup_is_rejected_and_the_old_one_keeps_running(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    supervisor = start_supervisor(config)
    good = config.read_text()
    config.write_text(good + "\n[pools.default.oops\n")
    supervisor.signal(signal.SIGHUP)
    supervisor.wait_message(b"reload rejected")
    config.write_text(good)
    with connect(config=str(config)) as q:
        assert result_of(q, "jobs.examples:add", 1, 2) == 3
    assert "new configuration rejected" in supervisor.output()


def test_sigttin_and_sigttou_add_and_remove_a_worker(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"workers": 2}})
    supervisor = start_supervisor(config)
    with connect(config=str(config)) as q:
        wait_for(lambda: len(live_workers(q)) == 2, what="two workers")
        supervisor.signal(signal.SIGTTIN)
        wait_for(lambda: len(live_workers(q)) == 3, what="three workers after SIGTTIN")
        for count in (2, 1):  # one at a time: the kernel merges a signal sent while one is pending
            supervisor.signal(signal.SIGTTOU)
            wait_for(lambda: len(live_workers(q)) == count, what=f"{count} workers after SIGTTOU")
        assert result_of(q, "jobs.examples:add", 2, 2) == 4


def test_systemd_status_lines_and_stopping(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    supervisor = start_supervisor(config)
    status = supervisor.wait_message(b"STATUS=")
    assert b"workers busy" in status and b"jobs/s" in status
    supervisor.signal(signal.SIGTERM)
    supervisor.wait_message(b"STOPPING=1")
    assert supervisor.stop() == 0


def test_json_log_format(tmp_path):
    import json
    import subprocess
    import sys

    config = write_config(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "start", "--config", str(config),
                             "--log-format", "json"], stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    first = json.loads(proc.stderr.readline())
    proc.send_signal(signal.SIGTERM)
    rest = [json.loads(line) for line in proc.stderr.read().splitlines()]
    assert proc.wait(60) == 0
    assert {"ts", "level", "msg", "pid"} <= set(first)
    assert any("stopped" in line["msg"] for line in rest)


def test_watchdog_pings_come_from_the_loop_when_systemd_asks(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    supervisor = start_supervisor(config, env={"WATCHDOG_USEC": "200000"})
    for _ in range(3):  # a ping every 0.1 s, over and over
        supervisor.wait_message(b"WATCHDOG=1")


def test_a_reload_whose_job_modules_do_not_import_is_rejected(tmp_path, start_supervisor):
    """The old workers keep running, the error is in the log, no healthy job is failed."""
    config, _ = config_with_reloadable(tmp_path)
    supervisor = start_supervisor(config)
    with connect(config=str(config)) as q:
        assert result_of(q, "reloadable:version") == "first"
        (tmp_path / "reloadable.py").write_text("raise ImportError('boom on import')\n")
        supervisor.signal(signal.SIGHUP)
        supervisor.wait_message(b"reload rejected")
        (tmp_path / "reloadable.py").unlink()  # a module named in [jobs] modules that is gone
        supervisor.signal(signal.SIGHUP)
        supervisor.wait_message(b"reload rejected")
        job_id = q.enqueue("jobs.examples:add", 1, 2)
        record = wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 30, "add")
        assert (record.state, record.result, record.attempts) == ("succeeded", 3, 1)
        assert result_of(q, "reloadable:version") == "first"  # the old workers still run
        assert len(live_workers(q)) == 1
    log = supervisor.output()
    assert "boom on import" in log and "No module named 'reloadable'" in log
    assert "could not start" not in log and "configuration reloaded" not in log


def test_a_reload_lets_running_jobs_finish_past_the_grace(tmp_path, start_supervisor):
    """grace bounds a stop, not a reload: the old worker's job runs to its end, once."""
    config = write_config(tmp_path, pools={"default": {"workers": 1, "grace": 1}})
    supervisor = start_supervisor(config)
    release = tmp_path / "release"
    with connect(config=str(config)) as q:
        long_job = q.enqueue("jobs.examples:wait_for_file", str(release))
        wait_for(lambda: q.status(long_job).state == "running", what="the long job running")
        supervisor.signal(signal.SIGHUP)
        supervisor.wait_message(b"READY=1")
        # a job of the new workers that outlasts the old pool's grace of 1 s
        assert result_of(q, "jobs.examples:sleep", 1.5) == 1.5
        assert q.status(long_job).state == "running"
        release.touch()
        record = wait_for(lambda: (r := q.status(long_job)).state in END_STATES and r, 30, "long job")
        assert (record.state, record.result, record.attempts) == ("succeeded", 1, 1)
    assert "interrupted" not in supervisor.output()


def test_a_shorter_lease_on_reload_is_renewed_before_it_expires(tmp_path, start_supervisor):
    """After a reload from lease 30 to 1.5, leases are renewed within 0.5 s, not at the
    old 2 s pace: a supervisor of another host, sweeping every 0.75 s, never finds the
    running job's lease expired and never reruns it."""
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    first = start_supervisor(config)
    release = tmp_path / "release"
    with connect(config=str(config)) as q:
        job_id = q.enqueue("jobs.examples:wait_for_file", str(release))
        wait_for(lambda: q.status(job_id).state == "running", what="the job running")
        config.write_text(config.read_text().replace("lease = 30", "lease = 1.5"))
        first.signal(signal.SIGHUP)
        first.wait_message(b"READY=1")
        wait_for(lambda: "configuration reloaded" in first.output(), what="the reload")
        other = start_supervisor(config, env={"JOBRT_HOST": "another-host"})
        for _ in range(12):  # its heartbeats, 0.5 s apart: rescue sweeps over several old renewal gaps
            other.wait_message(b"STATUS=")
        release.touch()
        record = wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 30, "the job")
        assert (record.state, record.attempts) == ("succeeded", 1)
    assert "rescued" not in other.output()


def test_a_changed_metrics_section_is_refused_on_reload(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    supervisor = start_supervisor(config)
    config.write_text(config.read_text() + '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    supervisor.signal(signal.SIGHUP)
    supervisor.wait_message(b"reload rejected")
    assert "metrics.listen: cannot change on reload" in supervisor.output()
