"""Starting workers from a zygote: a small process, started once by the supervisor, that
imports the job modules and clones spare workers ahead of need.

    supervisor --(a spare's pipe ends, SCM_RIGHTS)--> zygote: clone(CLONE_PARENT) -> spare
    supervisor <--(the spare's pid)------------------ zygote
    supervisor --(SETUP: the worker's setup, on the spare's pipe)--> spare: becomes the worker

Why: every fork of the supervisor itself cost it about 4 ms of CPU (measured in a drain
recycling every 100 jobs): the page tables copied, then a copy-on-write fault for each
page of its heap it touched afterwards, and its SQLite connection closed before the fork
and reopened (schema read, statements prepared) after it. The zygote is a new interpreter
holding only what workers need (about half the supervisor's memory, so cheaper to fork,
and less for each worker to own); it never touches its pages nor holds a connection.
The supervisor asks for the next spare as soon as it takes one and adopts it when the
zygote answers (its socket is one more fd of the loop), so starting a worker never waits
for the zygote, which on a busy machine may wait for a core.

The spare is cloned with CLONE_PARENT, so it is the supervisor's child exactly as a
forked worker would be: the supervisor sets its process group, waits on its pidfd, reaps
it with waitpid and is signalled by PR_SET_PDEATHSIG's parent. The clone is the raw
system call (Python has no os.clone), wrapped in the interpreter's own fork hooks as
os.fork wraps fork(). Where that call is unknown (an architecture not listed here) or
the zygote fails, the supervisor forks its workers itself, as before.

This module is the zygote's own code; the supervisor's side (starting it, asking it for
spares) is runtime.workers.zygote_handle, so the zygote's image, which every worker
shares, holds none of what only the supervisor uses.
"""

from __future__ import annotations

import _socket  # the C type socket.socket wraps: socket.py would add selectors and array to the image
import ctypes
import functools
import gc
import os
import platform
import signal
import struct
import sys
import traceback

import orjson

from runtime.registry import collect
from runtime.workers import sandbox
from runtime.workers.child import become_worker
from runtime.workers.process import close_all, die_with_parent, enter_child, set_name

CLONE_PARENT = 0x00008000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220}.get(platform.machine())
FD = 3  # where the zygote finds its end of the socket
PID = struct.Struct("q")  # a pid, or -errno when the clone failed
LEN = struct.Struct(">I")  # the SETUP message's length, before its JSON


def supported() -> bool:
    return _SYS_CLONE is not None


@functools.cache
def _syscall():
    """libc's syscall(), looked up once (each ctypes.PyDLL builds a new function-pointer
    class). PyDLL: the GIL stays held, as os.fork holds it."""
    syscall = ctypes.PyDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long
    return syscall


def _clone_sibling() -> int:
    """fork(), except that the child's parent is this process's parent."""
    syscall = _syscall()
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


def main(spec_text: str) -> None:
    """The zygote's life (a new interpreter, started by the supervisor): import the job
    modules, then clone a spare for each request, until the supervisor goes."""
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
    sock = _socket.socket(fileno=FD)
    try:
        registry = collect(spec["modules"], spec["module_path"], spec["config"])
    except BaseException:  # noqa: BLE001 - the supervisor imported them; it forks workers itself now
        traceback.print_exc()
        return
    gc.collect()
    gc.freeze()  # the image's objects stay out of the workers' collections: their pages stay shared
    fd_size = struct.calcsize("3i")
    while True:
        message, ancillary, _flags, _ = sock.recvmsg(64, _socket.CMSG_SPACE(fd_size))
        if not message:
            return
        fds: list[int] = []
        for level, kind, data in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(data) // 4}i", data[:len(data) - len(data) % 4]))
        pid = _clone_sibling()
        if pid == 0:
            sock.close()
            _become(fds, registry, parent)
        close_all(fds)
        sock.send(PID.pack(pid))


def _become(fds: list[int], registry: dict, parent: int) -> None:
    """In a spare: wait for the worker's setup on its pipe, then be that worker. Never returns."""
    try:
        die_with_parent()  # the supervisor's child (CLONE_PARENT): it dies with the supervisor
        if os.getppid() != parent:
            os._exit(0)
        set_name("jobrt-spare")
        size = _read_exactly(fds[0], LEN.size)
        message = _read_exactly(fds[0], LEN.unpack(size)[0]) if size else b""
    except BaseException:  # noqa: BLE001 - a spare that cannot start just goes
        os._exit(0)
    if not message:  # the supervisor let it go unused
        os._exit(0)
    setup = sandbox.ChildSetup(*(tuple(v) if isinstance(v, list) else v for v in orjson.loads(message)))
    ends = (fds[0], fds[1], fds[2] if len(fds) > 2 else -1)
    enter_child(ends, lambda r, w: become_worker(r, w, parent, registry, setup))


def _read_exactly(fd: int, size: int) -> bytes:
    """`size` bytes from a blocking pipe, not one more (the RUN frames after them are the
    worker's); b"" at the pipe's end."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data
