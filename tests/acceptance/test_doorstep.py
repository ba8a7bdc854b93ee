"""The README's first command on a fresh Debian 12 or Ubuntu 24.04, whose python3 is the
system's: externally managed (PEP 668), so `pip install` outside a virtual environment is
refused. `scripts/start`, with nothing but /usr/bin:/bin on PATH, makes .venv with that
python3, installs jobrt into it, starts the default supervisor (supervisor.toml) and stops
on SIGTERM with exit 0; run again, it reuses .venv. Once as the user running the tests and,
when that is root (as in CI), once as `nobody`: starting needs no root.

It runs on a clone of the repository, so it tests what is committed, not the work tree.
"""

from __future__ import annotations

import os
import pwd
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

SYSTEM_PYTHON = "/usr/bin/python3"
STARTED = re.compile(rb"INFO supervisor \S+ started: pool default")
# Bounds a hang, no more: a first run makes a venv and installs jobrt's dependencies with pip.
FIRST_RUN_TIMEOUT = 900.0

pytestmark = pytest.mark.slow  # a fresh venv and a pip install: about 10-30 s per run


def require_system_python() -> None:
    """Skip (fail under CI=true) unless /usr/bin/python3 is Python 3.11 or newer."""
    try:
        found = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(*sys.version_info[:2])"],
                               capture_output=True, text=True, check=True, timeout=60).stdout
        version = tuple(int(part) for part in found.split())
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        why = f"no usable {SYSTEM_PYTHON} ({error})"
    else:
        if version >= (3, 11):
            return
        why = f"{SYSTEM_PYTHON} is Python {'.'.join(map(str, version))}, jobrt needs 3.11 or newer"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI must run the doorstep test on a system python3 >= 3.11")
    pytest.skip(why)


def bare_environment(home: str) -> dict[str, str]:
    """What a fresh login has: HOME and the system PATH, plus pip's and the proxies' settings
    (where this machine gets its packages from)."""
    env = {"HOME": home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update((key, value) for key, value in os.environ.items()
               if key.startswith("PIP_") or key.lower() in ("http_proxy", "https_proxy", "no_proxy"))
    return env


class Start:
    """`bash scripts/start` in a clone, its stdout and stderr read together."""

    def __init__(self, clone: Path, env: dict[str, str], user: str | None):
        kwargs = {}
        if user is not None:
            account = pwd.getpwnam(user)
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.output = b""
        self.proc = subprocess.Popen(["bash", "scripts/start"], cwd=clone, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True, **kwargs)

    def wait_started(self, timeout: float) -> None:
        """Read the output until the supervisor logs that it started."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while not STARTED.search(self.output):
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise AssertionError(f"no start after {timeout} s:\n{self.text()}")
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"scripts/start ended ({self.proc.wait()}) before the "
                                         f"supervisor started:\n{self.text()}")
                self.output += chunk

    def stop(self) -> int:
        """SIGTERM the supervisor (scripts/start execs it: same pid); its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        rest, _ = self.proc.communicate(timeout=120)
        self.output += rest
        return self.proc.returncode

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def discard(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stdout.close()


def start_and_stop(clone: Path, env: dict[str, str], user: str | None, timeout: float) -> str:
    start = Start(clone, env, user)
    try:
        start.wait_started(timeout)
        code = start.stop()
        assert code == 0, start.text()
        return start.text()
    finally:
        start.discard()


@pytest.fixture
def home(tmp_path):
    """A directory for the clone, and the run's HOME (pip's cache): under tmp_path, or for
    a run as `nobody` in a directory of its own, since tmp_path is root's alone."""
    made = []

    def home_for(user: str | None) -> Path:
        if user is None:
            return tmp_path
        directory = Path(tempfile.mkdtemp(prefix="jobrt-doorstep-"))
        made.append(directory)
        account = pwd.getpwnam(user)
        os.chown(directory, account.pw_uid, account.pw_gid)
        return directory

    yield home_for
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("as_nobody", [False, True], ids=["this-user", "nobody"])
def test_scripts_start_works_with_the_system_python3(home, as_nobody):
    require_system_python()
    if as_nobody and os.geteuid() != 0:
        pytest.skip("not root: the run as this user already shows that start needs no root")
    user = "nobody" if as_nobody else None
    directory = home(user)
    clone = directory / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300,
                   capture_output=True)
    if user is not None:
        account = pwd.getpwnam(user)
        for path in [clone, *clone.rglob("*")]:
            os.lchown(path, account.pw_uid, account.pw_gid)
    # This user's HOME keeps pip's cache from run to run; nobody's is a fresh directory.
    env = bare_environment(os.environ.get("HOME", str(directory)) if user is None else str(directory))

    first = start_and_stop(clone, env, user, FIRST_RUN_TIMEOUT)
    assert "installing jobrt into .venv" in first, first
    assert "externally-managed-environment" not in first
    config = (clone / ".venv" / "pyvenv.cfg").read_text()
    assert re.search(r"^home = /usr/bin$", config, re.M), config  # made by the system python3
    if user is None and os.geteuid() == 0:  # supervisor.toml's pool drops to user "nobody"
        assert "WARNING pools.default: user/group apply only" not in first

    again = start_and_stop(clone, env, user, FIRST_RUN_TIMEOUT)
    assert "installing" not in again and "creating .venv" not in again, again  # reused

    version = subprocess.run([str(clone / ".venv" / "bin" / "jobrt"), "--version"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert re.fullmatch(r"jobrt \d+\.\d+\.\d+\S*\n", version.stdout), version
