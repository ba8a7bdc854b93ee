"""runtime.Pool as a new user meets it: a script file run with `python script.py`."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import alive, wait_for

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60  # seconds any script may take before the test gives up on it

HEADER = "import json, os, signal, sys, time\nfrom runtime import JobFailed, Pool\n"


def write_script(directory: Path, body: str, name: str = "script.py") -> Path:
    path = directory / name
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def script_env(**extra: str) -> dict:
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1", **extra)


def run(script: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script.name], cwd=script.parent, env=script_env(**env),
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture
def start():
    """Start a script in the background, output to files; teardown kills what still runs."""
    started: list[subprocess.Popen] = []

    def start(script: Path, **env: str) -> subprocess.Popen:
        n = len(started)
        out, err = (open(script.parent / f"run{n}.{kind}", "w") for kind in ("out", "err"))
        with out, err:
            proc = subprocess.Popen([sys.executable, script.name], cwd=script.parent,
                                    env=script_env(**env), stdout=out, stderr=err, text=True)
        proc.out, proc.err = Path(out.name), Path(err.name)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            family = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
            proc.wait()
            for child in family:
                child.kill()


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    code = proc.wait(TIMEOUT)
    return code, proc.out.read_text(), proc.err.read_text()


def recorded(db: Path) -> dict[int, tuple]:
    """{item: (state, result, error, traceback)} from a run record of map(fn, ints)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT args, state, result, error, traceback FROM jobrt_pool_calls").fetchall()
    conn.close()
    return {json.loads(args)[0][0]: rest for args, *rest in rows}


def has_succeeded(db: Path) -> bool:
    if not db.exists():  # sqlite3.connect would create it
        return False
    try:
        return any(state == "succeeded" for state, *_ in recorded(db).values())
    except sqlite3.Error:  # not created yet
        return False


def logged(log: Path) -> list[tuple[str, int, int]]:
    """(run, pid, item) of each call, as the task appended them to calls.log."""
    if not log.exists():
        return []
    lines = log.read_text().split("\n")[:-1]  # not a line still being written
    return [(run, int(pid), int(item)) for run, pid, item in map(str.split, lines)]


def test_functions_of_main_lambdas_and_late_closures_run_in_workers(tmp_path):
    script = write_script(tmp_path, """
        def square(x):
            return x * x

        def adder(n):
            def add(x):
                return x + n
            return add

        with Pool(workers=2) as pool:
            print("squares", list(pool.map(square, range(10))))
            offset = 1000  # exists only after the workers forked for the first map
            print("closure", list(pool.map(adder(offset), range(5))))
            print("lambda", list(pool.map(lambda x: -x * offset, [1, 2, 3], ordered=False)))

            def late(a, b):
                return f"{a}-{b}"
            print("star", list(pool.map(late, "abc", [1, 2, 3])))
            print("submit", pool.submit(late, "x", b=offset).result(timeout=30))
        print("stats", json.dumps(pool.stats))
    """)
    result = run(script)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert json.loads(lines["squares"]) == [x * x for x in range(10)]
    assert json.loads(lines["closure"]) == [1000, 1001, 1002, 1003, 1004]
    assert sorted(json.loads(lines["lambda"])) == [-3000, -2000, -1000]
    assert lines["star"] == "['a-1', 'b-2', 'c-3']"
    assert lines["submit"] == "x-1000"
    stats = json.loads(lines["stats"])
    assert (stats["succeeded"], stats["failed"], stats["skipped"]) == (22, 0, 0)


def test_ctrl_c_ends_the_script_and_kills_every_worker(tmp_path, start):
    (tmp_path / "pids").mkdir()
    script = write_script(tmp_path, """
        def slow(i):
            open(os.path.join("pids", str(os.getpid())), "w").close()
            if i >= 3:
                time.sleep(600)
            return i

        with Pool(workers=2) as pool:
            for result in pool.map(slow, range(20)):
                print("result", result)
    """)
    proc = start(script)
    wait_for(lambda: "result 0" in proc.out.read_text(), what="the first result")
    wait_for(lambda: len(os.listdir(tmp_path / "pids")) >= 2, what="both workers to run a task")
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code != 0 and "KeyboardInterrupt" in err, err
    pids = [int(name) for name in os.listdir(tmp_path / "pids")]
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10, what=f"workers {pids} to be gone")


RESUMABLE = """
    def work(i):
        with open("calls.log", "a") as log:
            log.write(f"{os.environ['RUN']} {os.getpid()} {i}\\n")
        if i == 250 and os.environ.get("KILL"):
            deadline = time.monotonic() + 30  # the test says when: once the record has rows
            while not os.path.exists("kill-now") and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)
        if i >= 200 and os.environ.get("STALL"):
            time.sleep(600)
        return i * 3

    with Pool(workers=2, storage="sqlite:///run.db") as pool:
        for i, result in enumerate(pool.map(work, range(400))):
            print(i, result)
    print("stats", json.dumps(pool.stats))
"""


def check_second_run(tmp_path, first: dict[int, tuple]) -> None:
    """Run the script again: it skips what `first` recorded as succeeded and runs the rest."""
    done = {item for item, (state, *_) in first.items() if state == "succeeded"}
    result = run(tmp_path / "script.py", RUN="2")
    assert result.returncode == 0, result.stderr
    *lines, stats = result.stdout.splitlines()
    assert lines == [f"{i} {i * 3}" for i in range(400)]
    assert json.loads(stats.removeprefix("stats "))["skipped"] == len(done)
    calls = logged(tmp_path / "calls.log")
    again = {item for run_, _, item in calls if run_ == "2"}
    assert not again & done, f"run 2 ran calls run 1 recorded: {sorted(again & done)[:10]}"
    assert {item for _, _, item in calls} == set(range(400))
    assert {state for state, *_ in recorded(tmp_path / "run.db").values()} == {"succeeded"}


def test_a_run_killed_with_sigkill_resumes_where_its_record_ends(tmp_path, start):
    proc = start(write_script(tmp_path, RESUMABLE), RUN="1", KILL="1")
    wait_for(lambda: has_succeeded(tmp_path / "run.db"), what="the record's first rows")
    (tmp_path / "kill-now").touch()
    code, _, err = finish(proc)
    assert code == -signal.SIGKILL, err
    workers = {pid for run_, pid, _ in logged(tmp_path / "calls.log")}
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10,
             what=f"the workers {workers} of the killed script to be gone")
    record = recorded(tmp_path / "run.db")
    assert any(state == "succeeded" for state, *_ in record.values())
    assert 250 not in record
    check_second_run(tmp_path, record)


def test_a_run_stopped_with_ctrl_c_records_what_it_did_and_resumes(tmp_path, start):
    proc = start(write_script(tmp_path, RESUMABLE), RUN="1", STALL="1")
    wait_for(lambda: proc.out.read_text() and any(item >= 200 for *_, item in logged(tmp_path / "calls.log")),
             what="results, and calls from item 200 on stalled")
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code != 0 and "KeyboardInterrupt" in err, err
    printed = {int(line.split()[0]) for line in out.splitlines()}
    record = recorded(tmp_path / "run.db")
    succeeded = {item for item, (state, *_) in record.items() if state == "succeeded"}
    assert printed <= succeeded, f"printed, not recorded: {sorted(printed - succeeded)[:10]}"
    assert max(succeeded) < 200 and all(record[i][1] == str(i * 3) for i in succeeded)
    check_second_run(tmp_path, record)


def test_a_call_that_failed_is_run_again_by_the_next_run(tmp_path):
    script = write_script(tmp_path, """
        def work(i):
            with open("calls.log", "a") as log:
                log.write(f"{os.environ['RUN']} {os.getpid()} {i}\\n")
            if i == 7 and os.environ.get("FAIL"):
                raise ValueError(f"bad item {i}")
            return {"item": i}

        with Pool(workers=2, storage="sqlite:///run.db", errors="return") as pool:
            for result in pool.map(work, range(20)):
                print("FAILED" if isinstance(result, JobFailed) else result["item"])
        print("stats", json.dumps(pool.stats))
    """)
    first = run(script, RUN="1", FAIL="1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[:20] == [str(i) if i != 7 else "FAILED" for i in range(20)]
    state, result, error, tb = recorded(tmp_path / "run.db")[7]
    assert state == "failed" and result is None
    assert "ValueError" in error and "bad item 7" in error and "raise ValueError" in tb

    second = run(script, RUN="2")
    assert second.returncode == 0, second.stderr
    *lines, stats = second.stdout.splitlines()
    assert lines == [str(i) for i in range(20)]
    stats = json.loads(stats.removeprefix("stats "))
    assert (stats["skipped"], stats["succeeded"], stats["failed"]) == (19, 1, 0)
    assert [item for run_, _, item in logged(tmp_path / "calls.log") if run_ == "2"] == [7]
    state, result, error, _ = recorded(tmp_path / "run.db")[7]
    assert state == "succeeded" and json.loads(result) == {"item": 7}


PROGRESS = """
    def work(i):
        return i * 2

    with Pool(workers=2, progress=True) as pool:
        total = sum(pool.map(work, range(100)))
    print("total", total)
"""


def read_terminal(master: int) -> str:
    """Everything written to the terminal until every writer closed it."""
    chunks = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if select.select([master], [], [], 1)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the script and its workers closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    else:
        raise AssertionError("the terminal was never closed")
    return b"".join(chunks).decode(errors="replace")


def test_progress_is_drawn_on_a_terminal(tmp_path):
    script = write_script(tmp_path, PROGRESS)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, script.name], cwd=tmp_path, env=script_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    try:
        screen = read_terminal(master)
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, screen
    assert out == "total 9900\n"
    last = screen.replace("\x1b[K", "").replace("\r\n", "\n").split("\r")[-1]
    assert "100/100" in last and "100%" in last and "/s" in last, repr(screen)
    assert last.endswith("\n"), repr(screen)  # the line is finished, not left for the shell prompt


def test_progress_stays_silent_when_stderr_is_not_a_terminal(tmp_path):
    result = run(write_script(tmp_path, PROGRESS))
    assert result.returncode == 0 and result.stdout == "total 9900\n", result.stderr
    assert "100/100" not in result.stderr and "/s" not in result.stderr and "\r" not in result.stderr


def test_a_second_script_on_the_same_record_fails_fast_with_in_use(tmp_path, start):
    script = write_script(tmp_path, """
        def wait_release(i):
            deadline = time.monotonic() + 2 * 60
            while not os.path.exists("release") and time.monotonic() < deadline:
                time.sleep(0.01)
            return i + 1

        with Pool(workers=2, storage="sqlite:///run.db") as pool:
            print("open")
            print("sum", sum(pool.map(wait_release, range(4))))
    """)
    first = start(script)
    wait_for(lambda: "open" in first.out.read_text(), what="the first script's pool")
    second = run(script)  # it would wait for `release` (and time out) if it got the record
    assert second.returncode != 0
    assert "in use" in second.stderr and "run.db" in second.stderr, second.stderr
    assert "open" not in second.stdout
    (tmp_path / "release").touch()
    code, out, err = finish(first)
    assert code == 0 and out == "open\nsum 10\n", err
