"""The development loop as a user types it: `jobrt start --reload`, `jobrt start
--until-empty / --max-jobs N / --max-time S`, and `jobrt run NAME`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import tomli_w

from runtime import connect
from tests.conftest import END_STATES, REPO, jobrt, wait_for, write_config


def states(config, ids) -> list[str]:
    with connect(config=str(config)) as q:
        return [q.status(job_id).state for job_id in ids]


def enqueue(config, name, args="[]", *options) -> int:
    code, out, err = jobrt("enqueue", "--config", config, name, "--args", args, *options)
    assert code == 0, err
    return int(out)


# -- jobrt start --reload ---------------------------------------------------------

def write_jobs(directory, version: str, helper: str, mtime_ns: int | None = None) -> None:
    """devjobs.py (whose job returns `version` and the helper's value) and helper.py, a
    project module it imports that is no job module."""
    (directory / "devjobs.py").write_text(textwrap.dedent(f"""
        from runtime import job
        import helper

        @job
        def version():
            return [{version!r}, helper.VALUE]
    """))
    if mtime_ns is not None:
        os.utime(directory / "devjobs.py", ns=(mtime_ns, mtime_ns))
    if not (directory / "helper.py").exists() or helper not in (directory / "helper.py").read_text():
        (directory / "helper.py").write_text(f"VALUE = {helper!r}\n")


def result_of(q, name):
    job_id = q.enqueue(name)
    record = wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 30, name)
    assert record.state == "succeeded", record.error
    return record.result


def test_reload_replaces_workers_when_a_job_module_changes_and_keeps_them_on_a_syntax_error(
        tmp_path, start_supervisor):
    second = (int(time.time()) - 10) * 10**9
    write_jobs(tmp_path, "one", "a", mtime_ns=second + 10**8)
    config = tmp_path / "supervisor.toml"
    config.write_text(tomli_w.dumps({
        "storage": {"url": "sqlite:///jobs.db"},
        "jobs": {"modules": ["devjobs"], "path": [str(REPO), str(tmp_path)]},
        "pools": {"default": {"workers": 1, "run_as_root": True}}}))
    # .pyc files written, as where PYTHONDONTWRITEBYTECODE is not set (an empty value is not set)
    supervisor = start_supervisor(config, env={"PYTHONDONTWRITEBYTECODE": ""}, args=["--reload"])
    with connect(config=str(config)) as q:
        assert result_of(q, "devjobs:version") == ["one", "a"]
        # the same size and the same whole second as the code compiled at start: its .pyc,
        # were it kept, would pass for the new source's
        write_jobs(tmp_path, "two", "a", mtime_ns=second + 2 * 10**8)
        wait_for(lambda: result_of(q, "devjobs:version") == ["two", "a"], what="the edited job module's code")
        assert f"{tmp_path / 'devjobs.py'} changed" in supervisor.output(), supervisor.output()

        (tmp_path / "helper.py").write_text("VALUE = 'b'\n")  # a file the job module imports
        wait_for(lambda: result_of(q, "devjobs:version") == ["two", "b"], what="the edited helper's code")

        (tmp_path / "devjobs.py").write_text("from runtime import job\n\n@job\ndef version(:\n")
        wait_for(lambda: "new configuration rejected" in supervisor.output(), what="the rejected reload")
        assert "SyntaxError" in supervisor.output()
        assert result_of(q, "devjobs:version") == ["two", "b"]  # the old workers still run it

        write_jobs(tmp_path, "three", "c")
        wait_for(lambda: result_of(q, "devjobs:version") == ["three", "c"], what="the fixed module's code")
    assert supervisor.stop() == 0, supervisor.output()


# -- jobrt start --until-empty / --max-jobs / --max-time --------------------------

def test_until_empty_drains_the_due_jobs_and_leaves_a_delayed_one(tmp_path, storage):
    config = write_config(tmp_path, storage=storage, rate_limits={"api-calls": "2/s"})
    due = [enqueue(config, "jobs.examples:add", f"[{i}, 1]") for i in range(6)]
    # due, but held back by their limiter while no job is claimed or runs here: they keep it working
    calls = tmp_path / "calls.txt"
    due += [enqueue(config, "jobs.examples:call_api", f'["{calls}"]') for _ in range(4)]
    due.append(enqueue(config, "jobs.examples:release_once", "[0]"))  # due again once released
    later = enqueue(config, "jobs.examples:echo", "[]", "--delay", "3600")
    code, _, err = jobrt("start", "--config", config, "--until-empty")
    assert code == 0, err
    assert "--until-empty: no job is due" in err and "stopped" in err
    assert states(config, due) == ["succeeded"] * len(due), err
    assert states(config, [later]) == ["pending"]
    code, _, err = jobrt("start", "--config", config, "--until-empty")  # nothing due: at once
    assert code == 0 and "--until-empty" in err, err


def test_max_jobs_stops_after_n_runs_with_the_rest_pending_and_none_lost(tmp_path):
    config = write_config(tmp_path, pools={"default": {"workers": 1}})
    ids = [enqueue(config, "jobs.examples:sleep", "[0.05]") for _ in range(12)]
    code, _, err = jobrt("start", "--config", config, "--max-jobs", "3")
    assert code == 0, err
    assert "--max-jobs 3 reached" in err
    found = states(config, ids)
    # runs already under way (or sent ahead to the worker) when the third ended still finish
    assert found.count("succeeded") >= 3, found
    assert found.count("pending") >= 1 and set(found) == {"succeeded", "pending"}, found
    with connect(config=str(config)) as q:
        assert all(q.status(i).attempts == 0 for i, s in zip(ids, found) if s == "pending")


def test_max_time_stops_with_exit_0_and_returns_a_job_cut_short(tmp_path):
    config = write_config(tmp_path, pools={"default": {"workers": 1, "grace": 0.2}})
    job_id = enqueue(config, "jobs.examples:sleep", "[60]")
    # --until-empty does not stop it while the job runs; --max-time does (the rules combine)
    code, _, err = jobrt("start", "--config", config, "--max-time", "1", "--until-empty")
    assert code == 0, err
    assert "--max-time 1 s reached" in err
    assert states(config, [job_id]) == ["pending"]  # killed after the grace, returned


def test_stop_options_refuse_bad_values(tmp_path):
    config = write_config(tmp_path)
    for option, value in (("--max-jobs", "0"), ("--max-time", "-1"), ("--max-time", "nan")):
        code, _, err = jobrt("start", "--config", config, option, value)
        assert code == 2 and option in err and "Traceback" not in err, err


# -- jobrt run ----------------------------------------------------------------------

RUN_JOBS = """
import runtime
from runtime import job

@job
def where(x):
    print("printed by the job")
    return {"x": x, "attempt": runtime.attempt(), "job_id": runtime.job_id(),
            "batch": runtime.current_batch()}

@job
def stop_here():
    value = "before"
    breakpoint()
    return value

@job
def broken():
    raise ValueError("bad input")

@job
def give_up():
    runtime.fail("not today")

@job
def later():
    runtime.release(30)
"""


def run_config(tmp_path):
    (tmp_path / "runjobs.py").write_text(RUN_JOBS)
    return write_config(tmp_path, jobs={"modules": ["jobs.examples", "runjobs"],
                                        "path": [str(REPO), str(tmp_path)]})


def test_run_prints_the_result_and_stores_nothing(tmp_path):
    config = run_config(tmp_path)
    code, out, err = jobrt("run", "--config", config, "runjobs:where", "--args", '["a"]')
    assert code == 0, err
    assert out.strip() == '{"x":"a","attempt":1,"job_id":0,"batch":null}'
    assert "printed by the job" in err
    code, out, err = jobrt("run", "--config", config, "jobs.examples:add", "--kwargs", '{"a": 2, "b": 3}')
    assert (code, out.strip()) == (0, "5"), err
    assert not (tmp_path / "jobs.db").exists()  # no storage was opened, let alone written


def test_run_is_in_this_process_so_breakpoint_works(tmp_path):
    config = run_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONBREAKPOINT"}
    result = subprocess.run([sys.executable, "-m", "runtime.cli", "run", "--config", str(config),
                             "runjobs:stop_here"], input="value = 'changed at the prompt'\ncontinue\n",
                            capture_output=True, text=True, timeout=60, env=dict(env, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '"changed at the prompt"'


def test_run_reports_failures_with_exit_1_and_bad_names_with_exit_2(tmp_path):
    config = run_config(tmp_path)
    code, out, err = jobrt("run", "--config", config, "runjobs:broken")
    assert code == 1 and out == ""
    assert "Traceback" in err and 'raise ValueError("bad input")' in err and "ValueError: bad input" in err
    code, _, err = jobrt("run", "--config", config, "runjobs:give_up")
    assert code == 1 and "fail('not today')" in err and "Traceback" not in err
    code, _, err = jobrt("run", "--config", config, "runjobs:later")
    assert code == 1 and "release(30)" in err and "due in 30 s" in err
    code, _, err = jobrt("run", "--config", config, "runjobs:brokn")
    assert code == 2 and "did you mean runjobs:broken?" in err and len(err.splitlines()) == 1, err
    code, _, err = jobrt("run", "--config", config, "where")
    assert code == 2 and "did you mean runjobs:where?" in err, err
    code, _, err = jobrt("run", "--config", config, "runjobs:where", "--args", "[1e999]")
    assert code == 2 and "--args" in err and "Traceback" not in err
    assert not (tmp_path / "jobs.db").exists()


def test_until_empty_stops_while_a_paused_queues_jobs_wait(tmp_path):
    # A paused queue's backlog waits for `jobrt resume`: it must not keep a cron-run
    # supervisor working for ever.
    config = write_config(tmp_path)
    held = enqueue(config, "jobs.examples:add", "[1, 2]")
    code, _, err = jobrt("pause", "--config", config, "--queue", "default")
    assert code == 0, err
    code, _, err = jobrt("start", "--config", config, "--until-empty")
    assert code == 0 and "--until-empty: no job is due" in err, err
    assert states(config, [held]) == ["pending"]
