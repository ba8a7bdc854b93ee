"""What benchmarks/peers.py runs beside the peers: its virtual environment, the processes it
starts (workers, Redis, PostgreSQL), and reading them (/proc: process trees, PSS).

Every process is started in a session of its own and recorded in a `Processes` registry,
which stops each one by pid at the end (SIGTERM to its tree, then SIGKILL), even on
Ctrl-C or an error. Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "benchmarks" / "requirements-peers.txt"


# -- the virtual environment ---------------------------------------------------------------
def default_venv() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "jobrt-peers-venv"


def venv_stamp() -> str:
    """What the venv was built from: the pins, jobrt's own dependencies, this checkout and
    the Python building it. jobrt is installed editable, so its code is always current."""
    digest = hashlib.sha256()
    for part in (REQUIREMENTS.read_bytes(), (REPO / "pyproject.toml").read_bytes(),
                 str(REPO).encode(), sys.version.encode()):
        digest.update(part + b"\0")
    return digest.hexdigest()


def ensure_venv(venv: Path) -> Path:
    """The venv's python, building the venv first unless its stamp matches."""
    python = venv / "bin" / "python"
    stamp = venv / "jobrt-peers.stamp"
    if python.exists() and stamp.exists() and stamp.read_text() == venv_stamp():
        return python
    print(f"building the peers' virtual environment in {venv} (once per change of "
          f"{REQUIREMENTS.name})", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, timeout=1800)
    subprocess.run([*pip, "-e", str(REPO)], check=True, timeout=600)
    stamp.write_text(venv_stamp())
    return python


def ensure_installed(command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` with apt-get where missing."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{command} is not installed: apt-get install {package}")
    print(f"installing {package} with apt-get", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, timeout=900,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
    found = shutil.which(command)
    if not found:
        raise RuntimeError(f"apt-get installed {package} but {command} is still not on PATH")
    return found


# -- processes -----------------------------------------------------------------------------
def process_tree(pid: int) -> dict[int, list[int]]:
    """`pid` and every process below it (read from /proc), each with its children."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    tree, todo = {}, [pid]
    while todo:
        current = todo.pop()
        tree[current] = children.get(current, [])
        todo.extend(tree[current])
    return tree


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def pss_kib(pid: int) -> int | None:
    """Proportional set size of one process, from /proc/PID/smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Processes:
    """The processes this run started; `stop_all` ends those still running."""

    def __init__(self):
        self.running: dict[int, subprocess.Popen] = {}

    def start(self, command: list[str], log: Path, env: dict | None = None, cwd: Path | None = None,
              **popen) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=cwd, start_new_session=True, **popen)
        self.running[proc.pid] = proc
        return proc

    def stop(self, procs: list[subprocess.Popen], grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
        """`sig` to each process, SIGKILL to its whole tree after `grace` seconds. The tree
        is read first, so children in groups of their own (rq's work horses) and children
        orphaned by their parent's exit are ended too."""
        trees = {proc.pid: process_tree(proc.pid) for proc in procs}
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for pid in {p for tree in trees.values() for p in tree}:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                print(f"warning: process {proc.pid} outlived SIGKILL by 10 s", file=sys.stderr)
            self.running.pop(proc.pid, None)

    def stop_all(self) -> None:
        self.stop(list(self.running.values()))


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns something true; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - a server still starting refuses connections
            last_error = error
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, size: int = 600) -> str:
    try:
        data = path.read_bytes()[-size:]
    except OSError:
        return ""
    return data.decode(errors="replace").strip()


# -- Redis ---------------------------------------------------------------------------------
class Redis:
    """redis-server on a port of its own on 127.0.0.1, in a throwaway directory, AOF on with
    `appendfsync` (everysec: Redis's advice; `durable()` switches to always for a while,
    so that an enqueue is on disk when it returns, as jobrt's and PostgreSQL's are)."""

    def __init__(self, processes: Processes, directory: Path, appendfsync: str):
        server = ensure_installed("redis-server", "redis-server")
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = directory / "redis.log"
        self.proc = processes.start(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--save", "", "--appendonly", "yes", "--appendfsync", appendfsync, "--daemonize", "no",
             "--databases", "16"], self.log)
        self.processes, self.appendfsync = processes, appendfsync
        import redis

        client = redis.Redis(port=self.port)
        try:
            wait_until(lambda: self.proc.poll() is None and client.ping(), 15, what="redis-server")
        except RuntimeError as error:
            raise RuntimeError(f"{error}: {log_tail(self.log)}") from None
        finally:
            client.close()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @contextlib.contextmanager
    def durable(self):
        """appendfsync always inside the block."""
        import redis

        with redis.Redis(port=self.port) as client:
            client.config_set("appendfsync", "always")
            try:
                yield
            finally:
                client.config_set("appendfsync", self.appendfsync)

    def stop(self) -> None:
        self.processes.stop([self.proc])


# -- PostgreSQL ----------------------------------------------------------------------------
def postgres_bindir() -> str:
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        ensure_installed("pg_lsclusters", "postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is installed but no initdb was found")
    return os.path.dirname(found[-1])


class Postgres:
    """A throwaway cluster (initdb, then the postgres server started here by pid), unix socket
    only, fsync on: as tests/pgcluster.py makes one with durable=True. As root, the server
    runs as the `postgres` user."""

    def __init__(self, processes: Processes, directory: Path):
        bindir = postgres_bindir()
        directory.mkdir(parents=True, exist_ok=True)
        self.socket_dir = directory
        data = directory / "data"
        user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
        if user:
            shutil.chown(directory, "postgres", "postgres")
        os.chmod(directory, 0o755)
        result = subprocess.run([os.path.join(bindir, "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                 "--no-sync", "-E", "UTF8"], capture_output=True, text=True, timeout=120, **user)
        if result.returncode:
            raise RuntimeError(f"initdb failed: {result.stdout}{result.stderr}")
        self.log = directory / "postgres.log"
        self.log.touch()
        if user:
            shutil.chown(self.log, "postgres", "postgres")
        self.processes = processes
        self.proc = processes.start(
            [os.path.join(bindir, "postgres"), "-D", str(data), "-k", str(directory), "-c", "listen_addresses=",
             "-c", "max_connections=200"], self.log, **user)
        import psycopg

        try:
            wait_until(lambda: self.proc.poll() is None and psycopg.connect(self.dsn(), connect_timeout=2).close() is None,
                       30, interval=0.1, what="postgres")
        except RuntimeError as error:
            raise RuntimeError(f"{error}: {log_tail(self.log)}") from None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} user=postgres dbname={dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's fast shutdown
        self.processes.stop([self.proc], grace=15, sig=signal.SIGINT)
