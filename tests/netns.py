"""Test hosts on this machine: network namespaces a test makes, joined by a bridge, and the
cuts between them (tests/chaos/test_partitions.py, benchmarks/partitions.py).

    the test process (this namespace) ── bridge jb<pid>, 10.213.N.1/24
        ├── veth ── namespace jobrt<pid>-db       eth0 10.213.N.2   PostgreSQL (tests/pgcluster.py)
        ├── veth ── namespace jobrt<pid>-host-a   eth0 10.213.N.3   `jobrt start`, JOBRT_HOST=host-a
        └── veth ── namespace jobrt<pid>-host-b   eth0 10.213.N.4   ...

Every name carries the test's pid, and N is a /24 of 10.213.0.0/16 that no address or route
of this machine touches, so only the test's own addresses are ever contacted. Faults, each
undone by heal():

- cut(name): the namespace's eth0 set down; its connections see no route and wait;
- black_hole(name): every packet into or out of the namespace dropped without a word, by an
  nft table inside it (the equivalent of `tc qdisc ... netem loss 100%`: this kernel is
  built without sch_netem, which no modprobe can add);
- hang(cluster): SIGSTOP to every process of a PostgreSQL cluster: connections stay open
  and nothing answers.

teardown() heals, ends the processes started here (by pid), deletes the namespaces (and so
their veths) and the bridge; it is safe to call after a half-built network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SUPERNET = ipaddress.ip_network("10.213.0.0/16")
BLACK_HOLE = """table inet jobrt_black_hole {
    chain input { type filter hook input priority -300; policy drop; iif "lo" accept; }
    chain output { type filter hook output priority -300; policy drop; oif "lo" accept; }
}
"""
STOP_WAIT = 30.0  # seconds a process started here gets after SIGTERM before SIGKILL
ETC_NETNS = Path("/etc/netns")  # where `ip netns exec` finds a namespace's own /etc files


def unavailable() -> str | None:
    """Why this machine cannot host the test's namespaces, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: apt-get install {package} (scripts/test installs it as root)"
    probe = f"jobrt{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def require(names: list[str]) -> "Network":
    """A Network of `names`, or the test skipped when this machine cannot host one (failed
    on CI when scripts/test should have installed what is missing)."""
    import pytest

    reason = unavailable()
    if reason:
        if os.environ.get("CI") and "apt-get install" in reason:
            pytest.fail(f"{reason}; scripts/test should have installed it")
        pytest.skip(reason)
    return Network(names)


@contextlib.contextmanager
def built(names: list[str]):
    """require(names)'s Network, torn down after; a teardown that left anything fails."""
    network = require(names)
    try:
        yield network
    finally:
        problems = network.teardown()
    assert problems == [], problems


@contextlib.contextmanager
def postgres(network: "Network", name: str = "db"):
    """A throwaway PostgreSQL (tests/pgcluster.py) in namespace `name`, taking TCP on its
    address there; healed (a hung cluster cannot stop) and destroyed after."""
    from tests.pgcluster import Cluster

    cluster = Cluster(netns=network.namespaces[name], listen=network.addresses[name])
    try:
        yield cluster
    finally:
        network.heal()
        cluster.destroy()


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A /24 of SUPERNET that no address or route of this namespace overlaps, tried from a
    place that `seed` (the pid) picks, so two tests at once rarely try the same one."""
    used = [ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
            for link in json.loads(_ip("-j", "-4", "addr", "show").stdout) for info in link.get("addr_info", [])]
    used += [ipaddress.ip_network(route["dst"]) for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout)
             if route.get("dst", "default") != "default"]
    subnets = list(SUPERNET.subnets(new_prefix=24))
    for index in range(len(subnets)):
        subnet = subnets[(seed + index) % len(subnets)]
        if not any(subnet.overlaps(network) for network in used):
            return subnet
    raise RuntimeError(f"every /24 of {SUPERNET} is in use here")


class Network:
    """The bridge and one namespace per name in `names`, addressed in order from .2."""

    def __init__(self, names: list[str]):
        pid = os.getpid()
        self.bridge = f"jb{pid}"
        self.subnet = free_subnet(pid)
        hosts = self.subnet.hosts()
        self.gateway = str(next(hosts))
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self.processes: list[subprocess.Popen] = []
        self.undo: list = []  # how to heal each fault in force, latest last
        self.made_etc_netns = False  # etc() made /etc/netns: teardown removes it if empty
        self.notify_dir = tempfile.mkdtemp(prefix="jobrt-netns-")  # short: a socket path is <= 108 bytes
        try:
            _ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index, name in enumerate(names):
                namespace = f"jobrt{pid}-{name}"
                _ip("netns", "add", namespace)
                self.namespaces[name] = namespace
                outer = f"jv{pid}x{index}"
                _ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                _ip("link", "set", outer, "master", self.bridge, "up")
                self.addresses[name] = address = str(next(hosts))
                self.run_in(name, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
                self.run_in(name, "ip", "link", "set", "eth0", "up")
                self.run_in(name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.teardown()
            raise

    def run_in(self, name: str, *command: str, stdin: str | None = None) -> None:
        """Run a command inside namespace `name`; raise with its output if it fails."""
        result = subprocess.run(["ip", "netns", "exec", self.namespaces[name], *command], input=stdin,
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} in {name} failed: {result.stderr.strip()}")

    # -- faults ----------------------------------------------------------------------------

    def cut(self, name: str) -> None:
        self.run_in(name, "ip", "link", "set", "eth0", "down")
        self.undo.append(lambda: self.run_in(name, "ip", "link", "set", "eth0", "up"))

    def black_hole(self, name: str) -> None:
        self.run_in(name, "nft", "-f", "-", stdin=BLACK_HOLE)
        self.undo.append(lambda: self.run_in(name, "nft", "delete", "table", "inet", "jobrt_black_hole"))

    def hang(self, cluster) -> None:
        """SIGSTOP the cluster's postmaster, then every process it started (it forks no more)."""
        postmaster = psutil.Process(cluster.postmaster_pid())
        stopped = [postmaster]
        self.undo.append(lambda: _continue(stopped))
        postmaster.send_signal(signal.SIGSTOP)
        while fresh := [p for p in postmaster.children(recursive=True) if p not in stopped]:
            for process in fresh:
                stopped.append(process)
                with contextlib.suppress(psutil.NoSuchProcess):  # a backend that just exited
                    process.send_signal(signal.SIGSTOP)

    def heal(self) -> None:
        """Undo every fault in force, latest first."""
        while self.undo:
            self.undo.pop()()

    # -- what the namespaces' processes read ------------------------------------------------

    def etc(self, name: str, file: str, text: str) -> None:
        """Write /etc/netns/<namespace>/<file>: `ip netns exec` binds it over /etc/<file> for
        what it starts in `name` afterwards (hosts, resolv.conf, nsswitch.conf). Written in
        place, so a process already started there reads the new text at its next lookup.
        teardown removes the directory (named after the namespace, so the test's own)."""
        directory = ETC_NETNS / self.namespaces[name]
        self.made_etc_netns = self.made_etc_netns or not ETC_NETNS.exists()
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / file, "w") as out:  # the same inode: the bind mount shows it
            out.write(text)

    # -- processes -------------------------------------------------------------------------

    def start_in(self, name: str, *command: str) -> subprocess.Popen:
        """`command` in namespace `name`, its output on a pipe (text); stopped by teardown."""
        process = subprocess.Popen(["ip", "netns", "exec", self.namespaces[name], *command],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        return process

    def start_supervisor(self, name: str, config: Path, log: Path) -> subprocess.Popen:
        """`jobrt start --config CONFIG` in namespace `name` as host `name` (JOBRT_HOST), once
        it has told its NOTIFY_SOCKET it is ready. It is stopped by teardown if not before."""
        notify_path = os.path.join(self.notify_dir, f"{name}-{time.monotonic_ns()}")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # a path: abstract ones are per namespace
        try:
            notify.bind(notify_path)
            env = dict(os.environ, JOBRT_HOST=name, NOTIFY_SOCKET=notify_path, PYTHONUNBUFFERED="1",
                       PYTHONPATH=str(REPO))
            with open(log, "ab") as output:
                process = subprocess.Popen(
                    ["ip", "netns", "exec", self.namespaces[name], sys.executable, "-m", "runtime.cli",
                     "start", "--config", str(config), "--log-level", "debug"],
                    cwd=config.parent, env=env, stdout=output, stderr=subprocess.STDOUT)
            self.processes.append(process)
            deadline = time.monotonic() + 60
            while True:
                notify.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    if b"READY=1" in notify.recv(4096):
                        return process
                except socket.timeout:
                    raise AssertionError(f"the supervisor of {name} never became ready; log:\n"
                                         f"{log.read_text(errors='replace')[-4000:]}") from None
        finally:
            notify.close()
            os.unlink(notify_path)

    def stop(self, process: subprocess.Popen, timeout: float = STOP_WAIT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s: its exit status, None if it had to be killed."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None

    def teardown(self) -> list[str]:
        """Heal, stop what was started here, delete the namespaces and the bridge. Goes on
        past each failure; returns them in words."""
        problems = []
        try:
            self.heal()
        except Exception as exc:  # noqa: BLE001 - the rest of the teardown must still run
            problems.append(f"heal: {exc}")
            self.undo.clear()
        for process in self.processes:
            self.stop(process)
        for namespace in self.namespaces.values():
            result = _ip("netns", "del", namespace, check=False)
            if result.returncode != 0:
                problems.append(f"ip netns del {namespace}: {result.stderr.strip()}")
        if _ip("link", "show", self.bridge, check=False).returncode == 0:
            result = _ip("link", "del", self.bridge, check=False)
            if result.returncode != 0:
                problems.append(f"ip link del {self.bridge}: {result.stderr.strip()}")
        shutil.rmtree(self.notify_dir, ignore_errors=True)
        for namespace in self.namespaces.values():
            shutil.rmtree(ETC_NETNS / namespace, ignore_errors=True)
        if self.made_etc_netns:
            with contextlib.suppress(OSError):  # another test's namespace may use it now
                ETC_NETNS.rmdir()
        return problems


def _continue(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result
