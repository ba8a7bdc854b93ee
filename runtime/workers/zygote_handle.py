"""The supervisor's side of the zygote (runtime.workers.zygote, which says why there is
one): starting it, asking it for spares ahead of need, adopting them, and handing each
its worker's setup. Apart from the zygote's own code, so that the zygote's image, which
every worker shares, holds none of this nor what it imports (socket.py, logging).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import struct
import sys
from collections import deque

import orjson

from runtime.workers import sandbox
from runtime.workers.process import adopt, close_all, pipes
from runtime.workers.zygote import FD, LEN, PID

log = logging.getLogger("jobrt")

_BOOT = "import sys, runtime.workers.zygote as z; z.main(sys.argv[1])"
REPLY_TIMEOUT = 10.0  # seconds the supervisor waits for a spare it cannot do without
SPARES = 1  # spares kept ready (or asked for): recycling takes one at a time


class Zygote:
    """The supervisor's handle on its zygote. `spawn` returns a new worker's Child."""

    def __init__(self, modules, module_path, config_path: str | None, capture_output: bool, loop):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        spec = orjson.dumps({"path": sys.path, "modules": list(modules), "module_path": list(module_path),
                             "config": config_path, "parent": os.getpid()}).decode()
        try:
            self.pid = os.posix_spawn(sys.executable, [sys.executable, "-c", _BOOT, spec], os.environ,
                                      file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), FD)])
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
        os.write(child.to_child, LEN.pack(len(message)) + message)  # a new, empty pipe: all fits
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
                reply = self.sock.recv(PID.size)
            except BlockingIOError:
                return
            except OSError:
                reply = b""
            parent_ends = self.asked.popleft()
            pid = PID.unpack(reply)[0] if len(reply) == PID.size else 0
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
