"""`jobrt start --reload`, for development: replace the workers when a job module's file
changes, as SIGHUP does.

    loop timer, every CHECK_EVERY s --> stat each watched file --> changed? --> Supervisor._reload
                                                                               (import check in a
                                                                               throwaway child, then
                                                                               new workers)

No thread and no inotify: the supervisor's loop stats the files on a timer (a few dozen
files cost microseconds). The files are those of the job modules and of the project
modules they import (runtime.source_files), as the supervisor imported them at start;
after each reload that imported, those the new code imports. A module that no longer
imports (a syntax error half-way through an edit) is logged and the old workers stay,
like any rejected reload; the next save is seen again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

CHECK_EVERY = 0.5  # seconds between two looks at the files' stamps

_Stamp = tuple[int, int, int] | None  # (mtime in ns, size, inode); None: no such file


def _stamp(path: str) -> _Stamp:
    try:
        info = os.stat(path)
    except OSError:
        return None  # removed (or being replaced): a change too
    # an editor that saves by renaming a new file over the old one changes the inode
    return info.st_mtime_ns, info.st_size, info.st_ino


def _forget_bytecode(path: str) -> None:
    """Delete the file's cached bytecode. Python trusts a .pyc whose recorded source mtime
    (whole seconds) and size match: an edit within the second the old code was compiled
    that keeps the size would otherwise import the old code again."""
    if path.endswith(".py"):
        with contextlib.suppress(ValueError, NotImplementedError, OSError):
            os.unlink(importlib.util.cache_from_source(path))


class SourceWatch:
    """The watched files and their last seen stamps. The loop asks `changed(now)` once
    `next_check` has come, and tells `watch(files)` what a successful reload imports."""

    def __init__(self, files, now: float):
        self.stamps: dict[str, _Stamp] = {path: _stamp(path) for path in files}
        self.next_check = now + CHECK_EVERY

    def watch(self, files) -> None:
        """Watch `files` from now on (and no others); one already watched keeps the stamp
        it had, so an edit made while the reload was under way is still seen."""
        self.stamps = {path: self.stamps[path] if path in self.stamps else _stamp(path) for path in files}

    def changed(self, now: float) -> list[str]:
        """The watched files whose stamp changed since the last look (each reported once)."""
        self.next_check = now + CHECK_EVERY
        changed = []
        for path, seen in self.stamps.items():
            stamp = _stamp(path)
            if stamp != seen:
                self.stamps[path] = stamp
                _forget_bytecode(path)
                changed.append(path)
        return changed
