"""`jobrt systemd-unit`: a systemd service unit that runs one supervisor.toml.

The unit is derived from the config, never from guesses at run time: the
stop timeout from the pools' grace, the hardening from where the database
lives and whether workers switch user. Every option carries a comment saying
why it is there, so an operator can judge what to change. Rendering reads
the config only; it opens no storage.
"""

from __future__ import annotations

import math
import os
import pwd
import re
import sys
from urllib.parse import parse_qs, urlsplit

from runtime.config.load import Config
from runtime.storage import sqlite_path

STOP_MARGIN_S = 15  # after the grace: kill overrunning jobs, write their state, exit
WATCHDOG_S = 30
RESTART_S = 5
_PLAIN_ARG = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# What each hardening option makes read-only or private (systemd.exec(5)).
PROTECT_SYSTEM_FULL = ("/usr", "/boot", "/efi", "/etc")
PROTECT_HOME = ("/home", "/root", "/run/user")
PRIVATE_TMP = ("/tmp", "/var/tmp")


def start_command(config_path: str) -> list[str]:
    """`jobrt start --config PATH` with absolute paths: the `jobrt` script installed beside
    this interpreter, else this interpreter with `-m runtime.cli.main`. sys.executable is kept
    as is, not resolved: a virtualenv's python is a symlink that must stay one."""
    script = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "jobrt")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        program = [script]
    else:
        program = [os.path.abspath(sys.executable), "-m", "runtime.cli"]
    return program + ["start", "--config", os.path.abspath(config_path)]


def reload_command() -> list[str]:
    """ExecReload without its $MAINPID: this interpreter runs sd_notify's `reload`, which
    announces the reload to systemd before it sends SIGHUP (see there why)."""
    return [os.path.abspath(sys.executable), "-m", "runtime.supervisor.sd_notify", "reload"]


def _specifiers(text: str) -> str:
    """systemd expands %x specifiers in most settings; a literal % is %%."""
    if any(c in text for c in "\n\r\0"):
        raise ValueError(f"{text!r}: a line break or NUL cannot go into a unit file")
    return text.replace("%", "%%")


def _exec_arg(arg: str) -> str:
    """One ExecStart= word: specifiers and $VARIABLES escaped, quoted when it needs it."""
    text = _specifiers(arg).replace("$", "$$")
    if _PLAIN_ARG.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _under(path: str, roots) -> str | None:
    """The first of `roots` that `path` (as given or resolved) lies under, else None."""
    for candidate in (os.path.abspath(path), os.path.realpath(path)):
        for root in roots:
            if candidate == root or candidate.startswith(root + "/"):
                return root
    return None


def _postgres_socket_in_tmp(url: str) -> bool:
    """True unless a PostgreSQL url clearly names a TCP host: libpq's default socket
    directory may be /tmp, which PrivateTmp= would hide."""
    parts = urlsplit(url)
    hosts = parse_qs(parts.query).get("host", [])
    if any(h.startswith("/") for h in hosts) or (not parts.hostname and not hosts):
        return True
    return bool(parts.hostname and parts.hostname.startswith("%2f"))


def render(config: Config, user: str | None = None) -> tuple[str, list[str]]:
    """(unit text, warnings for stderr). `user`: the account the supervisor runs as."""
    assert config.path is not None, "a unit needs a config file"
    warnings: list[str] = []
    pools = list(config.pools.values())
    switching = [p.name for p in pools if p.user or p.group]
    scheme = config.storage_url.split("://", 1)[0].lower()
    database = sqlite_path(config.storage_url, config.base_dir) if scheme == "sqlite" else None
    postgres = scheme in ("postgresql", "postgres")
    grace = max((p.grace for p in pools), default=0)
    lines = [
        f"# jobrt supervisor for {_specifiers(config.path)}",
        "# Written by `jobrt systemd-unit`; install it as /etc/systemd/system/jobrt.service,",
        "# then: systemctl daemon-reload && systemctl enable --now jobrt",
        "",
        "[Unit]",
        f"Description=jobrt supervisor ({_specifiers(config.path)})",
    ]
    if postgres:
        lines += ["# PostgreSQL storage: start once the network is up.",
                  "Wants=network-online.target", "After=network-online.target"]
    lines += [
        "",
        "[Service]",
        "# The supervisor sends READY=1 once its workers run, RELOADING=1 and READY=1 around",
        "# a reload, STOPPING=1 when it stops, and watchdog pings while its loop turns.",
        "Type=notify",
        "# Only the supervisor and this unit's own commands (ExecReload) may send those; a",
        "# job's processes cannot. (systemd older than 233 reads this as main, and then",
        "# `systemctl reload` returns as soon as the signal is sent.)",
        "NotifyAccess=exec",
        "ExecStart=" + " ".join(_exec_arg(a) for a in start_command(config.path)),
        "# Reload supervisor.toml and replace the workers gracefully: tell systemd a reload is",
        "# under way, then send SIGHUP. `systemctl reload` returns once the supervisor has",
        "# applied the new config (or rejected it: `systemctl status` says why), so jobs",
        "# enqueued after it run the new job code.",
        "ExecReload=" + " ".join(_exec_arg(a) for a in reload_command()) + " $MAINPID",
        "# SIGTERM to the supervisor alone: it stops claiming, lets running jobs finish",
        "# within their pool's grace, kills the rest and returns them to their queue.",
        "# Whatever is left in the unit's cgroup once it exits (or once TimeoutStopSec",
        "# runs out), such as processes a job started and left behind, gets SIGKILL.",
        "KillMode=mixed",
        f"# The largest pool grace ({grace:g} s) plus {STOP_MARGIN_S} s to kill overrunning jobs",
        "# and write their state.",
        f"TimeoutStopSec={math.ceil(grace) + STOP_MARGIN_S}",
        "# Restart after a crash, a kill or a missed watchdog ping; not after a clean stop.",
        "Restart=on-failure",
        f"RestartSec={RESTART_S}",
        f"# A supervisor whose loop stops turning for {WATCHDOG_S} s is killed and restarted.",
        f"WatchdogSec={WATCHDOG_S}",
        "# Relative paths in the config are relative to its directory.",
        f"WorkingDirectory={_specifiers(os.path.dirname(config.path))}",
        "SyslogIdentifier=jobrt",
    ]
    if user:
        lines += ["# The account the supervisor, and so every job, runs as.", f"User={user}"]
        try:
            pwd.getpwnam(user)
        except KeyError:
            warnings.append(f"no user {user!r} on this host: the unit will not start here")
        if switching:
            warnings.append(f"pools {', '.join(switching)} set user/group, which applies only "
                            f"when the supervisor starts as root; with User={user} it is ignored")
    else:
        lines.append("# No User=: the supervisor starts as root; each pool's `user` runs its jobs.")
        unsafe = [p.name for p in pools if not p.user and not p.run_as_root]
        if unsafe:
            warnings.append(f"pools {', '.join(unsafe)} set neither user nor run_as_root: started "
                            f"as root, `jobrt start` refuses to run them (or pass --user)")
    lines += ["", "# Hardening, kept to what cannot break forking workers, a root supervisor",
              "# dropping to a pool's user, or the database. Loosen it if jobs need more."]
    lines += _hardening(switching, database, postgres and _postgres_socket_in_tmp(
        config.storage_url), _read_from_tmp(config))
    lines += ["", "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n", warnings


def _read_from_tmp(config: Config) -> str | None:
    """What the service reads from /tmp or /var/tmp, which PrivateTmp= would hide: the
    program (a virtualenv made there), the config, a [jobs] path."""
    needed = [("the program", start_command(config.path)[0]), ("the config", config.path),
              *(("the job modules' directory", path) for path in config.module_path)]
    for what, path in needed:
        where = _under(os.path.abspath(path), PRIVATE_TMP)
        if where:
            return f"{what} {path} is under {where}"
    return None


def _hardening(switching: list[str], database: str | None, pg_socket_in_tmp: bool,
               read_from_tmp: str | None) -> list[str]:
    lines = []
    if switching:
        lines += [f"# NoNewPrivileges= left out: pools {', '.join(switching)} switch user, so this",
                  "# deployment manages privileges itself and its jobs may rely on setuid",
                  "# programs (sudo, su, ping), which no_new_privs disarms."]
    else:
        lines += ["# No process of the unit gains privileges through setuid/setgid programs or",
                  "# file capabilities (sudo and su stop working for jobs). Dropping privileges",
                  "# is unaffected.", "NoNewPrivileges=yes"]
    tmp = _under(database, PRIVATE_TMP) if database else None
    if tmp or pg_socket_in_tmp or read_from_tmp:
        why = (f"the database {database} is under {tmp}" if tmp else
               "PostgreSQL may be reached through a socket in /tmp" if pg_socket_in_tmp else read_from_tmp)
        lines.append(f"# PrivateTmp= left out: {_specifiers(why)}, which it would hide.")
    else:
        lines += ["# Jobs get their own /tmp and /var/tmp, emptied when the service stops.",
                  "PrivateTmp=yes"]
    for setting, roots, comment in (
            ("ProtectSystem=full", PROTECT_SYSTEM_FULL,
             "# /usr, /boot, /efi and /etc are read-only (jobs cannot write there either)."),
            ("ProtectHome=read-only", PROTECT_HOME,
             "# /home, /root and /run/user are read-only: job modules there still load.")):
        root = _under(database, roots) if database else None
        if root:
            lines.append(f"# {setting.split('=')[0]}= left out: the database {_specifiers(database)} is "
                         f"under {root}, which it would make read-only.")
        else:
            lines += [comment, setting]
    return lines
