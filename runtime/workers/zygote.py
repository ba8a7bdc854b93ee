"""Starting workers from a zygote: a small process, started once by the supervisor, that
imports the job modules and clones a spare worker ahead of each request.

    supervisor --(the worker's setup as JSON, its pipe ends over SCM_RIGHTS)--> zygote
    supervisor <--(the spare's pid)-------------------------------------------- zygote
                          zygote --(the same message)--> spare: becomes the worker
                          zygote: clone(CLONE_PARENT) -> the next spare

Why: every fork of the supervisor itself cost it about 4 ms of CPU (measured in a drain
recycling every 100 jobs): the page tables copied, then a copy-on-write fault for each
page of its heap it touched afterwards, and its SQLite connection closed before the fork
and reopened (schema read, statements prepared) after it. The zygote is a new interpreter
holding only what workers need (about half the supervisor's memory, so cheaper to fork,
and less for each worker to own), it never touches its pages nor holds a connection,
and it clones the next spare after answering, on another core: the supervisor waits
only for a message's round trip.

The worker is cloned with CLONE_PARENT, so it is the supervisor's child exactly as a
forked one would be: the supervisor sets its process group, waits on its pidfd, reaps
it with waitpid and is signalled by PR_SET_PDEATHSIG's parent. The clone is the raw
system call (Python has no os.clone), wrapped in the interpreter's own fork hooks as
os.fork wraps fork(). Where that call is unknown (an architecture not listed here) or
fails, the supervisor forks its workers itself, as before.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import platform
import signal
import socket
import struct
import sys
import traceback

import orjson

from runtime.registry import collect
from runtime.workers import sandbox
from runtime.workers.child import become_worker
from runtime.workers.process import adopt, close_all, die_with_parent, enter_child, pipes, set_name

log = logging.getLogger("jobrt")

CLONE_PARENT = 0x00008000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220}.get(platform.machine())
_FD = 3  # where the zygote finds its end of the socket
_BOOT = "import sys, runtime.workers.zygote as z; z.main(sys.argv[1])"
REPLY_TIMEOUT = 10.0  # seconds the supervisor waits for a pid before giving up on the zygote
_PID = struct.Struct("q")  # a pid, or -errno when the clone failed


def supported() -> bool:
    return _SYS_CLONE is not None


def _clone_sibling() -> int:
    """fork(), except that the child's parent is this process's parent."""
    libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held, as os.fork holds it
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = syscall(ctypes.c_long(_SYS_CLONE), ctypes.c_long(CLONE_PARENT | signal.SIGCHLD),
                  ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    error = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    return pid if pid > 0 else -error


class Zygote:
    """The supervisor's handle on its zygote. `spawn` returns the new worker's Child."""

    def __init__(self, modules, module_path, config_path: str | None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        spec = orjson.dumps({"path": sys.path, "modules": list(modules), "module_path": list(module_path),
                             "config": config_path, "parent": os.getpid()}).decode()
        try:
            self.pid = os.posix_spawn(sys.executable, [sys.executable, "-c", _BOOT, spec], os.environ,
                                      file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), _FD)])
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        self.sock = ours

    def spawn(self, setup: sandbox.ChildSetup, capture_output: bool):
        """Ask for a worker; its Child, or None when the zygote failed (it is then gone)."""
        child_ends, parent_ends = pipes(capture_output)
        try:
            self.sock.sendmsg([orjson.dumps([list(setup), capture_output])],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                struct.pack(f"{3 if capture_output else 2}i",
                                            *[fd for fd in child_ends if fd >= 0]))])
            reply = self.sock.recv(_PID.size)
        except OSError as exc:
            reply, why = b"", str(exc)
        else:
            why = "it exited"
        finally:
            close_all(child_ends)
        pid = _PID.unpack(reply)[0] if len(reply) == _PID.size else 0
        if pid > 0:
            return adopt(pid, parent_ends)
        close_all(parent_ends)
        if pid < 0:
            raise OSError(-pid, f"could not start a worker: {os.strerror(-pid)}")
        log.warning("the zygote that forks workers failed (%s); the supervisor forks them itself", why)
        self.close()
        return None

    def close(self) -> None:
        """The zygote leaves when its socket closes; reap it."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                os.kill(self.pid, signal.SIGKILL)  # unreaped, our child: its pid cannot be reused yet
                os.waitpid(self.pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass

def main(spec_text: str) -> None:
    """The zygote's life (a new interpreter, started by the supervisor): import the job
    modules, then one clone per request, until the supervisor goes."""
    spec = orjson.loads(spec_text)
    parent = spec["parent"]
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, signal.SIG_IGN)  # a terminal's ^C is the supervisor's to handle
    os.setpgid(0, 0)
    die_with_parent()
    if os.getppid() != parent:
        return
    set_name("jobrt-zygote")
    sys.path[:] = spec["path"]
    sock = socket.socket(fileno=_FD)
    try:
        registry = collect(spec["modules"], spec["module_path"], spec["config"])
    except BaseException:  # noqa: BLE001 - the supervisor imported them; it forks workers itself now
        traceback.print_exc()
        return
    gc.collect()
    gc.freeze()  # the image's objects stay out of the workers' collections: their pages stay shared
    _serve(sock, registry, parent)


def _serve(sock: socket.socket, registry: dict, parent: int) -> None:
    """Hand each request to the spare, answer with its pid, clone the next spare."""
    spare = None
    while True:
        message, fds = _receive(sock)
        if not message:
            return
        pid = 0
        for _attempt in range(2):  # a spare that died while waiting is replaced once
            if spare is None:
                spare = _clone_spare(sock, registry, parent)
            if isinstance(spare, int):  # the clone failed: -errno
                pid, spare = spare, None
                break
            try:
                spare[1].sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _FDS(len(fds)).pack(*fds))])
            except OSError:
                spare[1].close()
                spare = None
                continue
            pid = spare[0]
            spare[1].close()
            spare = None
            break
        close_all(fds)
        sock.send(_PID.pack(pid))
        spare = _clone_spare(sock, registry, parent)  # while the supervisor gets on with its work


def _FDS(count: int) -> struct.Struct:
    return struct.Struct(f"{count}i")


def _receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """A message and the fds it carries."""
    message, ancillary, _flags, _ = sock.recvmsg(4096, socket.CMSG_SPACE(_FDS(3).size))
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(_FDS(len(data) // 4).unpack(data[:len(data) - len(data) % 4]))
    return message, fds


def _clone_spare(sock: socket.socket, registry: dict, parent: int):
    """A clone that waits to become a worker: (its pid, our end of its socket), or -errno.
    It stays in the zygote's process group until then, which tells the supervisor it is
    a spare, not a stray that a job left behind."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = _clone_sibling()
    if pid == 0:
        try:
            sock.close()
            ours.close()
            _become(theirs, registry, parent)
        finally:
            os._exit(0)
    theirs.close()
    if pid < 0:
        ours.close()
        return pid
    return pid, ours


def _become(conn: socket.socket, registry: dict, parent: int) -> None:
    """In a spare: wait for a worker's setup and pipes, then be that worker."""
    die_with_parent()  # the supervisor's child (CLONE_PARENT): it dies with the supervisor
    if os.getppid() != parent:
        return
    set_name("jobrt-spare")
    message, fds = _receive(conn)
    conn.close()
    if not message:  # the zygote is gone
        return
    fields, capture_output = orjson.loads(message)
    setup = sandbox.ChildSetup(*(tuple(v) if isinstance(v, list) else v for v in fields))
    ends = (fds[0], fds[1], fds[2] if capture_output else -1)
    enter_child(ends, lambda r, w: become_worker(r, w, parent, registry, setup))
