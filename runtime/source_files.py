"""Which imported modules are the project's own source code.

A module is the project's when it was loaded from a file outside the interpreter's
standard library and site-packages (a venv's included) and outside jobrt itself: the
job modules of `[jobs] modules` and whatever they import from the project's tree.

Two readers: a reload (SIGHUP, `jobrt start --reload`) imports these anew in its new
workers, so an edited helper module is deployed with the job module that imports it;
and `jobrt start --reload` watches their files for changes. Installed libraries are
neither re-imported (their state, C extensions, would not survive it) nor watched.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig

_RUNTIME_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "")
_INSTALLED = ("site-packages", "dist-packages")  # directory names of installed libraries


def _interpreter_dirs() -> tuple[str, ...]:
    """The directories (with a trailing separator) whose modules are not the project's."""
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    dirs.update(getattr(site, "getsitepackages", lambda: [])())
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    if user_site:
        dirs.add(user_site)
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs) + (_RUNTIME_DIR,)


def project_modules() -> dict[str, str]:
    """Module name -> real path of its file, for each imported module that is the project's."""
    outside = _interpreter_dirs()
    found = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name == "__main__" or not isinstance(path, str):  # the `jobrt` script; namespace packages
            continue
        real = os.path.realpath(path)
        if real.startswith(outside) or any(part in _INSTALLED for part in real.split(os.sep)):
            continue
        found[name] = real
    return found


def watched_files(modules) -> list[str]:
    """The files `jobrt start --reload` watches: those of the project's modules, and of the
    job `modules` themselves wherever they are installed. Sorted, each once."""
    files = set(project_modules().values())
    for name in modules:
        path = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(path, str):
            files.add(os.path.realpath(path))
    return sorted(files)
