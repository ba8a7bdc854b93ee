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
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import platform
import select
import signal
import socket
import struct
import sys
import traceback
from collections import deque

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
REPLY_TIMEOUT = 10.0  # seconds the supervisor waits for a spare it cannot do without
SPARES = 1  # spares kept ready (or asked for): recycling takes one at a time
_PID = struct.Struct("q")  # a pid, or -errno when the clone failed
_LEN = struct.Struct(">I")  # the SETUP message's length, before its JSON


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
    """The supervisor's handle on its zygote. `spawn` returns a new worker's Child."""

    def __init__(self, modules, module_path, config_path: str | None, capture_output: bool, loop):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        spec = orjson.dumps({"path": sys.path, "modules": list(modules), "module_path": list(module_path),
                             "config": config_path, "parent": os.getpid()}).decode()
        try:
            self.pid = os.posix_spawn(sys.executable, [sys.executable, "-c", _BOOT, spec], os.environ,
                                      file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), _FD)])
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.capture_output = capture_output
        self.loop = loop
        self.asked: deque = deque()  # our pipe ends of each spare asked for, in order
        self.ready: deque = deque()  # spares adopted, not yet given a setup
        loop.watch_call(ours.fileno(), lambda _mask: self._take_replies())
        self._ask()

    def pids(self) -> list[int]:
        """The zygote's and its ready spares' pids: children of ours that are no strays."""
        return [self.pid] + [spare.pid for spare in self.ready]

    def spawn(self, setup: sandbox.ChildSetup):
        """A worker's Child: a ready spare, told its setup. None when the zygote failed
        (then it is gone, and the caller forks its workers itself)."""
        if not self.ready and self.sock is not None:
            if not self.asked:
                self._ask()
            self._wait_reply()  # at start, or when workers are asked for faster than cloned
        if not self.ready:
            return None
        child = self.ready.popleft()
        message = orjson.dumps(list(setup))
        os.write(child.to_child, _LEN.pack(len(message)) + message)  # a new, empty pipe: all fits
        if self.sock is not None and len(self.ready) + len(self.asked) < SPARES:
            self._ask()
        return child

    def _ask(self) -> None:
        child_ends, parent_ends = pipes(self.capture_output)
        fds = [fd for fd in child_ends if fd >= 0]  # no output pipe where output is not captured
        try:
            self.sock.sendmsg([b"spare"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                           struct.pack(f"{len(fds)}i", *fds))])
        except OSError as exc:
            close_all(parent_ends)
            self._fail(str(exc))
            return
        finally:
            close_all(child_ends)
        self.asked.append(parent_ends)

    def _wait_reply(self) -> None:
        if not select.select([self.sock], [], [], REPLY_TIMEOUT)[0]:
            self._fail(f"no answer in {REPLY_TIMEOUT:g} s")
            return
        self._take_replies()

    def _take_replies(self) -> None:
        while self.asked and self.sock is not None:
            try:
                reply = self.sock.recv(_PID.size)
            except BlockingIOError:
                return
            except OSError:
                reply = b""
            parent_ends = self.asked.popleft()
            pid = _PID.unpack(reply)[0] if len(reply) == _PID.size else 0
            if pid > 0:
                self.ready.append(adopt(pid, parent_ends))
                continue
            close_all(parent_ends)
            self._fail("it exited" if pid == 0 else f"it could not clone a worker: {os.strerror(-pid)}")

    def _fail(self, why: str) -> None:
        log.warning("the zygote that starts workers failed (%s); the supervisor forks them itself", why)
        self._end()

    def _end(self) -> None:
        """Stop talking to the zygote: its socket closed, the pipes of spares asked for and
        not answered closed, the zygote killed and reaped (it is our unreaped child, so its
        pid cannot have been reused)."""
        if self.sock is None:
            return
        self.loop.unwatch_fd(self.sock.fileno())
        self.sock.close()
        self.sock = None
        while self.asked:
            close_all(self.asked.popleft())
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass

    def close(self) -> None:
        """End the zygote and the spares no pool took."""
        self._end()
        while self.ready:
            spare = self.ready.popleft()
            spare.kill()
            try:
                os.waitpid(spare.pid, 0)
            except ChildProcessError:
                pass
            spare.close()


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
    sock = socket.socket(fileno=_FD)
    try:
        registry = collect(spec["modules"], spec["module_path"], spec["config"])
    except BaseException:  # noqa: BLE001 - the supervisor imported them; it forks workers itself now
        traceback.print_exc()
        return
    gc.collect()
    gc.freeze()  # the image's objects stay out of the workers' collections: their pages stay shared
    fd_size = struct.calcsize("3i")
    while True:
        message, ancillary, _flags, _ = sock.recvmsg(64, socket.CMSG_SPACE(fd_size))
        if not message:
            return
        fds: list[int] = []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(data) // 4}i", data[:len(data) - len(data) % 4]))
        pid = _clone_sibling()
        if pid == 0:
            sock.close()
            _become(fds, registry, parent)
        close_all(fds)
        sock.send(_PID.pack(pid))


def _become(fds: list[int], registry: dict, parent: int) -> None:
    """In a spare: wait for the worker's setup on its pipe, then be that worker. Never returns."""
    try:
        die_with_parent()  # the supervisor's child (CLONE_PARENT): it dies with the supervisor
        if os.getppid() != parent:
            os._exit(0)
        set_name("jobrt-spare")
        size = _read_exactly(fds[0], _LEN.size)
        message = _read_exactly(fds[0], _LEN.unpack(size)[0]) if size else b""
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
