"""Forking worker processes, killing their process groups, reading their exit.

Each child gets two private pipes and a pidfd. The pidfd becomes readable the
moment the child dies (no SIGCHLD handler, no polling), and signalling through
it can never hit a recycled pid. A dead child stays a zombie until reaped, so
its pid, which is also its process-group id, cannot be reused before we have
killed the group and reaped it.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import signal
import sys
import time
from collections.abc import Callable

from runtime.errors import JobrtError

F_SETPIPE_SZ = 1031
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PIPE_SIZE = 1 << 20  # fewer partial writes of big frames; the kernel caps it silently


def read_ready(fd: int, size: int) -> bytes | None:
    """Read what a non-blocking pipe holds: None when it is empty for now, b"" at its end
    (or when it broke: the pidfd says why)."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to a blocking fd (a child's end of its pipe)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def require_pidfd() -> None:
    """Workers are watched and signalled through pidfds (Linux 5.3+): say so plainly,
    before anything is forked, where they are missing."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError) as exc:
        raise JobrtError(
            f"jobrt's workers need Linux 5.3 or newer (pidfd_open: {exc}); run the supervisor "
            f"or Pool on Linux (this is {sys.platform} {os.uname().release}); clients that only "
            "enqueue and query do not need it") from None


class Child:
    """The supervisor's handle on one forked child."""

    __slots__ = ("pid", "pidfd", "to_child", "from_child", "output", "status")

    def __init__(self, pid: int, pidfd: int, to_child: int, from_child: int, output: int):
        self.pid = pid
        self.pidfd = pidfd
        self.to_child = to_child
        self.from_child = from_child
        self.output = output  # the child's stdout and stderr, read by the supervisor
        self.status: int | None = None

    def kill(self) -> None:
        """SIGKILL the child and everything in its process group."""
        if self.status is not None:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass
        self.kill_group()

    def kill_group(self) -> None:
        # Safe while the child is unreaped: its pid (= pgid) is still taken.
        if self.status is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def reap(self) -> int | None:
        """Collect the exit status if the child has exited; kills its group first."""
        if self.status is not None:
            return self.status
        self.kill_group()  # anything the job left running dies with it
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return None
        self.status = status
        return status

    def close(self) -> None:
        for fd in (self.to_child, self.from_child, self.output, self.pidfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.to_child = self.from_child = self.output = self.pidfd = -1


def spawn(body: Callable[[int, int], None], capture_output: bool = True) -> Child:
    """Fork a child that runs body(read_fd, write_fd) and must never return. With
    capture_output, the child's stdout and stderr become one pipe (Child.output), so what
    jobs print can be labelled; without, the child keeps this process's own."""
    child_ends, parent_ends = pipes(capture_output)
    pid = os.fork()
    if pid == 0:
        for fd in parent_ends:
            if fd >= 0:
                os.close(fd)
        enter_child(child_ends, body)
    close_all(child_ends)
    return adopt(pid, parent_ends)


def pipes(capture_output: bool) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A child's pipes: (its ends: read, write, output), (ours: write, read, output);
    output is -1 on both sides without capture_output."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    out_r, out_w = os.pipe() if capture_output else (-1, -1)
    return (to_r, from_w, out_w), (to_w, from_r, out_r)


def close_all(fds) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def enter_child(child_ends: tuple[int, int, int], body: Callable[[int, int], None]) -> None:
    """In a new child: its output pipe becomes fd 1 and 2, then body runs. Never returns."""
    read_fd, write_fd, out_w = child_ends
    try:
        if out_w >= 0:
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.close(out_w)
        body(read_fd, write_fd)
    finally:
        os._exit(70)


def adopt(pid: int, parent_ends: tuple[int, int, int]) -> Child:
    """In the parent of a new child `pid`: its own process group, a pidfd, our pipe ends
    non-blocking and large."""
    to_w, from_r, out_r = parent_ends
    if out_r >= 0:
        os.set_blocking(out_r, False)
    try:
        os.setpgid(pid, pid)  # also done in the child; whichever runs first wins the race
    except OSError:
        pass
    pidfd = os.pidfd_open(pid)
    for fd in (to_w, from_r):
        os.set_blocking(fd, False)
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
    return Child(pid, pidfd, to_w, from_r, out_r)


_SIGNAL_NOTES = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGKILL: "killed from outside jobrt: the kernel's OOM killer, or an operator",
}


def describe_exit(status: int) -> str:
    """How a child ended, in words: 'exited with status 3', 'was killed by SIGSEGV (...)'."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        note = _SIGNAL_NOTES.get(signum)
        return f"was killed by {name}" + (f" ({note})" if note else "")
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"


@functools.cache
def _prctl():
    """libc's prctl, or None off Linux. Looked up once: each ctypes.CDLL builds a new
    function-pointer class (15 us, and the pages it touches are copied in a fresh child),
    and a worker's life calls prctl four times; looked up in the zygote, its spares and
    workers find it ready."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent() -> None:
    """In a forked child: be SIGKILLed when the parent dies (PR_SET_PDEATHSIG). Off Linux
    this does nothing; the child's pipes still tell it the parent is gone."""
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def set_name(name: str) -> None:
    """This process's name in ps, top and /proc/PID/comm (15 bytes at most): jobrt-worker,
    jobrt-zygote, jobrt-spare, so operators (and tests) tell its processes apart."""
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def become_subreaper() -> bool:
    """Adopt orphaned descendants: a process a job started, which escaped its worker's
    process group (setsid) and outlived it, becomes our child, so we can kill it."""
    prctl = _prctl()
    return prctl is not None and prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def children() -> list[int]:
    """Pids of this process's direct children (cheap on Linux: no scan of /proc)."""
    pids = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as listing:
                pids.extend(int(pid) for pid in listing.read().split())
        return pids
    except OSError:
        import psutil

        return [child.pid for child in psutil.Process().children()]


def kill_strays(known: set[int], spares_group: int = 0) -> list[int]:
    """SIGKILL children that are not in `known` (orphans a job left, which we adopted as
    subreaper) and reap them; children in process group `spares_group` (the zygote's
    spare workers, see runtime.workers.zygote) are left alone. Returns the pids of those that were still running; one that
    was already dead (killed at an earlier sweep, a zombie now) is only reaped, so each
    stray is reported once. Safe against pid reuse: an unreaped child's pid is never reused."""
    killed = []
    for pid in children():
        if pid in known:
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                continue  # already dead
            if spares_group and os.getpgid(pid) == spares_group:
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            os.waitpid(pid, os.WNOHANG)  # a zombie now or at the next sweep
        except (ProcessLookupError, ChildProcessError):
            pass
    return killed


_PAGE = os.sysconf("SC_PAGE_SIZE")


def owned_bytes(pid: int, bound: int) -> int:
    """The memory process `pid` owns (USS), or 0 when it is gone. RSS overstates it: pages
    shared copy-on-write with the parent count in every child (after a fork, all of them
    do). RSS is one small read and never below USS, so the costlier USS read (the kernel
    sums the private pages of smaps_rollup) happens only when RSS is over `bound`."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            rss = int(statm.read().split()[1]) * _PAGE
        if rss <= bound:
            return rss
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            private = [int(line.split()[1]) for line in rollup if line.startswith(b"Private_")]
    except (OSError, IndexError, ValueError):
        return 0
    return sum(private) * 1024 if private else rss


def kill_leftovers(variable: str, value: str, wait: float = 0.0) -> int:
    """SIGKILL every process whose environment has variable=value: what the jobs of a
    dead supervisor left running. The environment is read through the process's pidfd
    target, and the signal sent through the pidfd, so a reused pid is never hit.

    SIGKILL lands asynchronously; with `wait` > 0, wait up to that many seconds for the
    killed processes to be dead (a pidfd turns readable when its process exits), so a
    caller that promises "no process left" can keep the promise."""
    needle = f"{variable}={value}".encode()
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            pidfd = os.pidfd_open(int(name))
        except OSError:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    killed.append(pidfd)
                    continue
        except OSError:
            pass
        os.close(pidfd)
    try:
        if wait > 0:
            _wait_dead(killed, wait)
    finally:
        for pidfd in killed:
            os.close(pidfd)
    return len(killed)


def _wait_dead(pidfds: list[int], seconds: float) -> None:
    import selectors  # a parent's wait (supervisor, embedded Pool): not in the workers' image

    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as selector:
        for pidfd in pidfds:
            selector.register(pidfd, selectors.EVENT_READ)
        pending = len(pidfds)
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                selector.unregister(key.fileobj)
                pending -= 1
