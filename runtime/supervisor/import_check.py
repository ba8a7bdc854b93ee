"""Importing a reload's job modules in a forked child before any worker is replaced.

    supervisor --fork--> checker: reimport(modules) --> the job names on its pipe, whether
                                                        they register event hooks, and the source
                                                        files they import (`--reload` watches), exit 0
                                                    --> or the error on its pipe, exit 1

SIGHUP deploys new job code: the new workers import the job modules anew from
disk. A module that no longer imports would leave the pool with workers that die
at boot, so the supervisor first has a throwaway child import them, and rejects
the reload, like a bad config file, when that fails. The child runs user code
(module bodies), never the supervisor; the supervisor's loop goes on meanwhile
and hears the verdict through the child's pidfd.
"""

from __future__ import annotations

import os
import signal

import orjson

from runtime.registry import reimport
from runtime.source_files import watched_files
from runtime.workers import process, protocol
from runtime.workers.event_relay import hooks_registered

CHECK_TIMEOUT = 60.0  # seconds the job modules may take to import before the reload is rejected


class ImportCheck:
    def __init__(self, modules, module_path, config_path: str | None, deadline: float):
        self.deadline = deadline  # monotonic
        self.child = process.spawn(lambda _r, w: _check(w, modules, module_path, config_path),
                                   capture_output=False)  # what modules print goes to our log
        self.said = bytearray()
        self.files: list[str] = []  # once the modules imported: the source files they import

    @property
    def pid(self) -> int:
        return self.child.pid

    def verdict(self) -> tuple[str | None, list[str], bool]:
        """Once the child has exited: (None, the job names, whether the modules register
        runtime.events hooks) when the modules imported, else (why not, [], False)."""
        while (data := process.read_ready(self.child.from_child, 1 << 20)):
            self.said += data
        status = self.child.reap()
        self.child.close()
        if status == 0:
            try:
                names, events, self.files = orjson.loads(self.said)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                return "the import check sent no job names (did a module write to its pipe?)", [], False
            return None, names, events is True
        text = self.said[:protocol.MAX_TRACEBACK].decode(errors="replace").strip()
        return text or f"the import check {process.describe_exit(status or 0)}", [], False

    def abandon(self) -> str:
        self.child.kill()
        try:
            os.waitpid(self.child.pid, 0)  # SIGKILLed: gone at once, and never left a zombie
        except ChildProcessError:
            pass
        self.child.close()
        return f"importing the job modules took more than {CHECK_TIMEOUT:g} s"


def _check(write_fd: int, modules, module_path, config_path) -> None:
    process.die_with_parent()
    signal.set_wakeup_fd(-1)
    try:
        names = sorted(reimport(modules, module_path, config_path))
    except BaseException as exc:  # noqa: BLE001 - whatever a module body raises is the verdict
        text = protocol.clean_text(str(exc) or type(exc).__name__, protocol.MAX_ERROR)
        process.write_all(write_fd, text.encode())
        os._exit(1)
    process.write_all(write_fd, orjson.dumps([names, hooks_registered(), watched_files(modules)]))
    os._exit(0)
