"""The `jobrt` command as a user types it, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import orjson
import pytest

from runtime.storage import NewJob, Outcome, open_storage
from tests.conftest import END_STATES, REPO, jobrt, wait_for, write_config


def test_init_writes_a_config_that_starts_and_refuses_to_overwrite(tmp_path, start_supervisor):
    path = tmp_path / "supervisor.toml"
    code, out, err = jobrt("init", path)
    assert code == 0 and path.exists() and (tmp_path / "myjobs.py").exists(), err
    text = path.read_text()
    assert "#" in text  # commented
    if os.geteuid() == 0:  # as root a pool needs `user` or `run_as_root` (README): the one edit
        assert text.count("run_as_root = false") == 1
        path.write_text(text.replace("run_as_root = false", "run_as_root = true"))
    supervisor = start_supervisor(path)  # READY=1, as systemd would see it
    code, out, err = jobrt("enqueue", "--config", path, "myjobs:hello", "--args", '["world"]')
    assert code == 0, err
    job_id = int(out)
    record = wait_for(lambda: (r := json.loads(jobrt("job", "--config", path, job_id, "--json")[1]))
                      ["state"] in END_STATES and r, what="the example job to end")
    assert (record["state"], record["result"]) == ("succeeded", "hello, world"), record
    assert supervisor.stop() == 0, supervisor.output()
    code, _, err = jobrt("init", path)
    assert code == 2 and "exists" in err and "Traceback" not in err


@pytest.mark.parametrize("text,key", [
    ("[pools.default]\nworkers = 'two'\n", "pools.default.workers"),
    ("[storage]\nurll = 'x'\n", "storage.urll"),
    ("[pools.default\n", "supervisor.toml"),
    ("[jobs]\nmodules = ['no_such_module_here']\n", "jobs.modules"),
    ("[pools.default]\nqueues = ['a', 'b', 'c']\nbalance = 'auto'\nmin_workers = 4\n",
     "pools.default.min_workers"),
    ("[pools.default]\nbalance = 'on'\n", "pools.default.balance"),
])
def test_bad_config_is_one_clear_line_and_exit_2(tmp_path, text, key):
    (tmp_path / "supervisor.toml").write_text(text)
    code, out, err = jobrt("start", "--config", tmp_path / "supervisor.toml", cwd=tmp_path)
    assert code == 2, err
    assert key in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_database_path_is_an_operational_failure(tmp_path):
    """Exit 1, as for a PostgreSQL server that is down: the config is well formed, the place
    it names cannot hold a database (a url wrong in itself is exit 2)."""
    config = write_config(tmp_path, storage={"url": "sqlite:////proc/no/such/dir/jobs.db"})
    code, _, err = jobrt("start", "--config", config)
    assert code == 1 and "/proc/no/such/dir/jobs.db" in err and "Traceback" not in err


def test_enqueue_errors_are_exit_2(tmp_path):
    config = write_config(tmp_path)
    code, _, err = jobrt("enqueue", "--config", config, "jobs.examples:nope")
    assert code == 2 and "jobs.examples:nope" in err and "Traceback" not in err
    code, _, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", "--args", "[1,")
    assert code == 2 and "--args" in err
    code, _, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", "--args", "[1e999]")
    assert code == 2 and "infinity" in err and "Traceback" not in err


def test_enqueue_status_and_job_as_json(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    code, out, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", "--args", '["hi"]',
                           "--queue", "low", "--delay", "3600")
    assert code == 0, err
    job_id = int(out)
    code, out, _ = jobrt("status", "--config", config, "--json")
    status = json.loads(out)
    assert status["queues"]["low"]["delayed"] == 1 and status["workers"] == []
    start_supervisor(config)

    def workers():
        return json.loads(jobrt("status", "--config", config, "--json")[1])["workers"]

    live = wait_for(lambda: len(workers()) == 2 and workers(), what="two workers in status")
    assert {"pid", "pool", "state", "jobs", "rss"} <= set(live[0])
    code, out, _ = jobrt("job", "--config", config, job_id, "--json")
    record = json.loads(out)
    assert {"id", "name", "queue", "state", "attempts", "error", "result"} <= set(record)
    assert (record["state"], record["queue"]) == ("pending", "low")
    code, out, _ = jobrt("status", "--config", config)
    assert code == 0 and "low" in out and "worker" in out
    code, _, err = jobrt("job", "--config", config, 999999)
    assert code == 1 and "999999" in err


def test_failed_jobs_admin(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    start_supervisor(config)
    code, out, _ = jobrt("enqueue", "--config", config, "jobs.examples:fail", "--args", '["nope"]')
    job_id = int(out)

    def failed():
        return json.loads(jobrt("failed", "list", "--config", config, "--json")[1])

    wait_for(lambda: [r["id"] for r in failed()] == [job_id], what="the job in the failed store")
    code, out, _ = jobrt("failed", "show", "--config", config, job_id)
    assert code == 0 and "RuntimeError: nope" in out and "Traceback" in out
    assert jobrt("failed", "retry", "--config", config, job_id)[0] == 0
    wait_for(lambda: json.loads(jobrt("job", "--config", config, job_id, "--json")[1])["attempts"] == 1
             and failed(), what="the retried job to fail again")
    assert jobrt("failed", "forget", "--config", config, job_id)[0] == 0
    assert failed() == []
    assert jobrt("failed", "retry", "--config", config)[0] == 2


# -- issue 10 items 11-15: every bad input is one clear line (or JSON document) ------------

TOO_BIG_ID = "9223372036854775808"  # 2**63: no backend holds it


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """A config on SQLite or on a throwaway PostgreSQL database (created, empty), and its url."""
    url = "sqlite:///jobs.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    open_storage(url, base_dir=str(tmp_path)).close()
    return write_config(tmp_path, storage={"url": url}), url


def jobrt_stdin(stdin: bytes, *args, cwd=None) -> tuple[int, str, str]:
    """`jobrt` with `stdin` on its standard input."""
    result = subprocess.run([sys.executable, "-m", "runtime.cli", *map(str, args)], cwd=cwd,
                            input=stdin, capture_output=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobrt: "), err
    return lines[0]


def assert_json_error(out: str, code: int) -> dict:
    document = json.loads(out)  # exactly one document
    assert document["exit"] == code and document["error"], document
    return document


@pytest.mark.parametrize("command", [
    ["job", TOO_BIG_ID], ["job", "0"], ["job", "-1"], ["job", "x"],
    ["failed", "show", TOO_BIG_ID], ["failed", "retry", TOO_BIG_ID], ["failed", "retry", "1", "0"],
    ["failed", "forget", TOO_BIG_ID], ["failed", "list", "--limit", TOO_BIG_ID],
    ["failed", "list", "--limit", "-5"], ["failed", "list", "--limit", "0"],
])
def test_ids_and_limits_beyond_64_bits_or_below_1_are_usage_errors(backend, command):
    config, _ = backend
    code, out, err = jobrt(*command, "--config", config)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "a whole number from 1 to 9223372036854775807" in line and command[-1] in line
    code, out, err = jobrt(*command, "--config", config, "--json")
    assert code == 2
    assert "9223372036854775807" in assert_json_error(out, 2)["error"]
    one_error_line(err)


def test_the_largest_job_id_is_looked_up_on_every_backend(backend):
    config, _ = backend
    for command in (["job"], ["failed", "show"], ["failed", "retry"], ["failed", "forget"]):
        code, out, err = jobrt(*command, str(2**63 - 1), "--config", config)
        assert code == 1 and f"no job with id {2**63 - 1}" in one_error_line(err)
    code, out, err = jobrt("failed", "list", "--limit", str(2**63 - 1), "--config", config)
    assert (code, out) == (0, "no failed jobs\n"), err


@pytest.mark.parametrize("url,fragment", [
    ("sqlite:///x%00.db", "null byte"),
    ("mysql://db.example/jobs", "unsupported storage url scheme 'mysql'"),
    ("sqlite://host/x.db", "names a host"),
    ("postgresql://[::1", "not a valid PostgreSQL url"),
])
@pytest.mark.parametrize("command", [["status"], ["workers"], ["health"], ["job", "1"],
                                     ["failed", "list"], ["clear", "--queue", "q"],
                                     ["enqueue", "jobs.examples:echo"]])
def test_a_bad_storage_url_is_a_config_error_naming_the_key(tmp_path, url, fragment, command):
    config = write_config(tmp_path, storage={"url": url})
    code, out, err = jobrt(*command, "--config", config)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert f"{config}: storage.url: " in line and fragment in line
    code, out, err = jobrt(*command, "--config", config, "--json")
    document = assert_json_error(out, 2)
    assert fragment in document["error"] and fragment in one_error_line(err)
    if command == ["health"]:
        assert document["status"] == "critical" and document["reasons"]
    assert os.listdir(tmp_path) == ["supervisor.toml"]


@pytest.mark.parametrize("option,value,fragment", [
    ("--args", "[123456789012345678901234567890]", "--args: the integer 123456789012345678901234"),
    ("--args", "[-9223372036854775809]", "does not fit in 64 bits"),
    ("--kwargs", '{"n": 18446744073709551616}', "--kwargs: the integer 18446744073709551616"),
    ("--args", "[NaN]", "--args: NaN is not JSON"),
    ("--args", "[1e999]", "infinity"),
    ("--args", '{"a": 1}', "--args must be a JSON list"),
    ("--kwargs", "[1]", "--kwargs must be a JSON object"),
    ("--args", "@does-not-exist.json", "cannot read the file"),
    ("--queue", "", "--queue: must be a queue name"),
    ("--queue", "a b", "--queue: must be a queue name"),
    ("--delay", "nan", "--delay: must be a number of seconds from 0"),
    ("--delay", "inf", "--delay: must be a number of seconds from 0"),
    ("--delay", "-1", "--delay: must be a number of seconds from 0"),
    ("--delay", "1e300", "--delay: must be a number of seconds from 0"),
    ("--priority", str(2**31), "--priority: must be a priority"),
])
def test_enqueue_refuses_what_the_python_api_refuses_naming_the_option(tmp_path, option, value,
                                                                         fragment):
    config = write_config(tmp_path)
    code, out, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", option, value,
                           cwd=tmp_path)
    assert code == 2 and out == "" and fragment in one_error_line(err), err
    code, out, err = jobrt("enqueue", "--config", config, "jobs.examples:echo", option, value,
                           "--json", cwd=tmp_path)
    assert code == 2 and fragment in assert_json_error(out, 2)["error"]
    assert not (tmp_path / "jobs.db").exists()  # refused before storage was even opened


def test_args_and_kwargs_up_to_the_payload_limit_come_from_a_file_or_stdin(backend, tmp_path):
    config, _ = backend
    big = ["x" * 1000] * 1000  # ~1 MB of JSON: far beyond what one argv string may hold
    (tmp_path / "args.json").write_bytes(orjson.dumps(big))
    code, out, err = jobrt_stdin(b'{"tag": "from stdin"}', "enqueue", "--config", config,
                                 "jobs.examples:echo", "--args", f"@{tmp_path / 'args.json'}",
                                 "--kwargs", "-", "--json")
    assert code == 0, err
    job_id = json.loads(out)["id"]
    record = json.loads(jobrt("job", "--config", config, job_id, "--json")[1])
    assert record["args"] == big and record["kwargs"] == {"tag": "from stdin"}
    code, _, err = jobrt_stdin(b"[1]", "enqueue", "--config", config, "jobs.examples:echo",
                               "--args", "-", "--kwargs", "-")
    assert code == 2 and "--args already reads stdin" in one_error_line(err)
    (tmp_path / "args.json").write_bytes(orjson.dumps(["x" * (1 << 20)]))
    code, _, err = jobrt("enqueue", "--config", config, "jobs.examples:echo",
                         "--args", f"@{tmp_path / 'args.json'}")
    assert code == 2 and "over the 1048576 byte limit" in one_error_line(err)
    code, out, _ = jobrt("enqueue", "--help")
    assert code == 0 and "@FILE" in out and "stdin" in out


def test_a_result_over_the_limit_fails_the_job_in_good_grammar(tmp_path, start_supervisor):
    config = write_config(tmp_path)
    # [["x..."],{}] is 9 bytes more than the string, under the limit; the result
    # {"args":["x..."],"kwargs":{}} is 25 bytes more, over it.
    (tmp_path / "args.json").write_bytes(orjson.dumps(["x" * ((1 << 20) - 20)]))
    code, out, err = jobrt("enqueue", "--config", config, "jobs.examples:echo",
                           "--args", f"@{tmp_path / 'args.json'}")
    assert code == 0, err
    start_supervisor(config)

    def record():
        return json.loads(jobrt("job", "--config", config, int(out), "--json")[1])

    failed = wait_for(lambda: (r := record())["state"] == "failed" and r, what="the job to fail")
    assert failed["error"].startswith("PayloadError: the job's result is 1048581 bytes of JSON, "
                                      "over the 1048576 byte limit"), failed["error"][:200]


def make_ended_jobs(url: str, base_dir) -> tuple[int, int, int]:
    """(a pending, a succeeded, a failed job), made through the storage API."""
    storage = open_storage(url, role="client", base_dir=str(base_dir))
    payload = orjson.dumps([[], {}])
    try:
        ids = storage.enqueue([NewJob("default", "jobs.examples:echo", payload, 0.0)] * 2)
        ids += storage.enqueue([NewJob("later", "jobs.examples:echo", payload, 0.0)])
        claimed = storage.claim("test", ["default"], 2, time.time() + 60, time.time())
        now = time.time()
        storage.settle("test", [Outcome(claimed[0].id, claimed[0].attempt, "succeeded", now,
                                        result=b"null"),
                                Outcome(claimed[1].id, claimed[1].attempt, "failed", now, error="x")])
    finally:
        storage.close()
    return ids[2], claimed[0].id, claimed[1].id


def test_failed_retry_forget_and_show_say_why_a_job_is_not_failed(backend, tmp_path):
    config, url = backend
    pending, succeeded, failed = make_ended_jobs(url, tmp_path)
    code, out, err = jobrt("failed", "retry", succeeded, "--config", config)
    assert (code, out) == (1, "retry: 0 jobs\n")
    assert one_error_line(err) == f"jobrt: job {succeeded} is not failed: it succeeded"
    code, out, err = jobrt("failed", "retry", succeeded, "--config", config, "--json")
    assert code == 1 and json.loads(out) == {
        "retry": 0, "error": f"job {succeeded} is not failed: it succeeded", "exit": 1}
    one_error_line(err)
    code, out, err = jobrt("failed", "retry", failed, pending, 4242, failed, "--config", config,
                           "--json")
    assert code == 1 and json.loads(out)["retry"] == 1
    assert one_error_line(err) == (f"jobrt: job {pending} is not failed: it is pending; no job "
                                   f"with id 4242 (it may never have existed, or was pruned)")
    code, out, err = jobrt("failed", "forget", pending, "--config", config)
    assert (code, out) == (1, "forget: 0 jobs\n") and "it is pending" in one_error_line(err)
    code, out, err = jobrt("failed", "show", succeeded, "--config", config, "--json")
    assert code == 1 and "it succeeded" in assert_json_error(out, 1)["error"]
    code, out, err = jobrt("failed", "retry", "--all", "1", "--config", config)
    assert code == 2 and "not both" in one_error_line(err)


def test_init_names_a_path_that_is_no_file(tmp_path):
    code, out, err = jobrt("init", "", cwd=tmp_path)
    assert code == 2 and out == ""
    assert "'' is not a file name" in one_error_line(err) and "jobrt init supervisor.toml" in err
    code, _, err = jobrt("init", tmp_path)
    assert code == 2 and f"{tmp_path}: is a directory" in one_error_line(err)
    assert os.listdir(tmp_path) == []


def test_init_writes_a_deployment_that_runs_its_example_job_from_anywhere(tmp_path,
                                                                          start_supervisor):
    home, elsewhere = tmp_path / "deploy", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    config = home / "supervisor.toml"
    code, out, err = jobrt("init", config, cwd=elsewhere)
    assert code == 0, err
    assert sorted(os.listdir(home)) == ["myjobs.py", "supervisor.toml"]
    assert f"jobrt start --config {config}" in out and "myjobs:hello" in out
    if os.geteuid() == 0:  # as root a pool must say whom its jobs run as
        config.write_text(config.read_text().replace("run_as_root = false", "run_as_root = true"))
    code, out, err = jobrt("enqueue", "--config", config, "myjobs:hello", "--args", '["you"]',
                           cwd=elsewhere)
    assert code == 0, err
    job_id = int(out)
    supervisor = start_supervisor(config)

    def record():
        return json.loads(jobrt("job", "--config", config, job_id, "--json", cwd=elsewhere)[1])

    done = wait_for(lambda: (r := record())["state"] in END_STATES and r, what="the example job")
    assert (done["state"], done["result"]) == ("succeeded", "hello, you"), supervisor.output()
    assert (home / "var" / "jobrt.db").exists()  # the default url, relative to the file


def test_enqueue_from_an_empty_or_closed_stdin_is_one_line(tmp_path):
    config = write_config(tmp_path)
    code, out, err = jobrt_stdin(b"", "enqueue", "--config", config, "jobs.examples:echo",
                                 "--args", "-", "--json")
    assert code == 2 and "--args is empty: give JSON such as []" in one_error_line(err)
    assert_json_error(out, 2)
    closed = subprocess.run([sys.executable, "-m", "runtime.cli", "enqueue", "--config", str(config),
                             "jobs.examples:echo", "--kwargs", "-"], preexec_fn=lambda: os.close(0),
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert closed.returncode == 2, closed.stderr
    assert one_error_line(closed.stderr) == "jobrt: --kwargs -: cannot read stdin: it is closed"


def test_what_a_job_module_prints_on_import_stays_off_stdout(tmp_path):
    (tmp_path / "noisy.py").write_text("from runtime import job\nprint('hello from noisy')\n\n"
                                       "@job\ndef quiet():\n    pass\n")
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('"jobs.examples",', '"jobs.examples", "noisy",')
                      .replace(f'"{REPO}",', f'"{REPO}", "{tmp_path}",'))
    code, out, err = jobrt("enqueue", "--config", config, "noisy:quiet", "--json")
    assert code == 0 and "hello from noisy" in err, err
    assert json.loads(out)["duplicate"] is False and set(json.loads(out)) == {"id", "duplicate"}


@pytest.mark.parametrize("command", [["job", "99", "--json"], ["status"], ["failed", "list", "--json"],
                                     ["enqueue", "jobs.examples:nope", "--json"]])
def test_a_reader_that_left_is_no_traceback(tmp_path, command):
    config = write_config(tmp_path)
    open_storage("sqlite:///jobs.db", base_dir=str(tmp_path)).close()
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout fails with EPIPE, as under `| head -0`
    try:
        result = subprocess.run([sys.executable, "-m", "runtime.cli", *command, "--config", str(config)],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
                                env={**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
                                     "PYTHONPATH": str(REPO)})  # buffered, as users run it
    finally:
        os.close(write_end)
    assert result.returncode in (0, 1, 2) and "Traceback" not in result.stderr, result.stderr
    assert "BrokenPipeError" not in result.stderr and len(result.stderr.splitlines()) <= 1


def pyproject_version() -> str:
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["version"]


def test_version_prints_the_package_version():
    code, out, err = jobrt("--version")
    assert (code, out, err) == (0, f"jobrt {pyproject_version()}\n", "")


def test_version_without_an_installed_package_is_the_constant_kept_equal_to_pyproject(
        monkeypatch, capsys):
    from importlib import metadata

    from runtime.cli import main as cli_main

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert cli_main.main(["--version"]) == 0
    assert capsys.readouterr().out == f"jobrt {pyproject_version()}\n"
    assert cli_main.VERSION == pyproject_version()
