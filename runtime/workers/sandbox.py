"""What a worker becomes before it runs any job: whose identity, which limits.

Resolved in the supervisor (names to ids, so a typo is a config error at
start, not a dead worker), applied in the child right after fork.
"""

from __future__ import annotations

import os
import resource
from collections import namedtuple

from runtime.errors import ConfigError


# A worker's identity and limits (a namedtuple: workers are cloned without typing).
ChildSetup = namedtuple("ChildSetup", (
    "uid",  # an int; None: keep the supervisor's identity
    "gid",  # an int or None
    "user",  # a name or None
    "home",  # a directory or None
    "max_open_files",  # 0 = inherit
    "core_dumps",  # bool
    "max_memory",  # bytes a worker may own after a job before it is recycled, 0 = no limit
    "owner",  # the supervisor's id, left in the environment of everything a job starts
    "fresh_modules",  # after a reload: job modules the child imports anew from disk
    "module_path",
), defaults=("", (), ()))


def resolve(pool, config_path: str | None, euid: int | None = None) -> ChildSetup:
    """Turn a pool's user/group/limits into ids; refuse to run jobs as root unless allowed."""
    # Resolved in the workers' parent only: the zygote, whose image workers share, does without these.
    import grp
    import logging
    import pwd

    euid = os.geteuid() if euid is None else euid
    key = f"pools.{pool.name}"
    uid = gid = user = home = None
    if pool.user or pool.group:
        if euid != 0:
            logging.getLogger("jobrt").warning(
                "%s: user/group apply only when the supervisor starts as root; workers keep uid %d",
                key, euid)
        else:
            if pool.user:
                try:
                    entry = pwd.getpwnam(pool.user)
                except KeyError:
                    raise ConfigError(f"no such user {pool.user!r} on this host", config_path,
                                      f"{key}.user") from None
                uid, gid, user, home = entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir
            if pool.group:
                try:
                    gid = grp.getgrnam(pool.group).gr_gid
                except KeyError:
                    raise ConfigError(f"no such group {pool.group!r} on this host", config_path,
                                      f"{key}.group") from None
    if euid == 0 and uid in (None, 0) and not pool.run_as_root:
        raise ConfigError(
            'started as root, jobs would run as root: set user = "..." (e.g. "nobody") for the '
            "workers, or run_as_root = true to allow it", config_path, f"{key}.user")
    # Past memory_limit_mb the next job would be killed at once: recycle before it.
    recycle_at = min((mb for mb in (pool.max_memory_mb, pool.memory_limit_mb) if mb), default=0)
    return ChildSetup(uid, gid, user, home, pool.max_open_files, pool.core_dumps, recycle_at << 20)


OWNER_ENV = "JOBRT_SUPERVISOR"


def apply(setup: ChildSetup) -> None:
    """In the child: set limits, then drop privileges for good (group before user)."""
    if setup.owner:
        # Lets the next supervisor on this host find what a job left behind after this
        # supervisor was SIGKILLed, even a process that escaped the process group.
        os.environ[OWNER_ENV] = setup.owner
    if not setup.core_dumps:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if setup.max_open_files:
        resource.setrlimit(resource.RLIMIT_NOFILE, (setup.max_open_files, setup.max_open_files))
    if setup.gid is not None:
        os.setgroups([])
        os.setgid(setup.gid)
    if setup.uid is not None:
        if setup.user:
            os.initgroups(setup.user, setup.gid if setup.gid is not None else os.getgid())
        os.setuid(setup.uid)
        os.environ.update(HOME=setup.home or "/", USER=setup.user or "", LOGNAME=setup.user or "")
