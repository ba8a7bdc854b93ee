"""Which filesystem holds a file, read from a mount table (/proc/self/mountinfo), and the
supervisor's refusal of an SQLite database on a network filesystem.

SQLite in WAL mode keeps the index of its log in memory that every process using the
database maps (the -shm file): processes of one host share it, those of two hosts
never do, and network filesystems' locks are unreliable besides. Two hosts on one
database, or even one host over NFS whose locks fail, can corrupt it. So a
supervisor refuses to start on one, unless `[storage] allow_network_fs = true` says
that only ever one host uses the database.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from runtime.errors import ConfigError

MOUNTINFO = "/proc/self/mountinfo"
# Filesystem types whose files live on another host, or whose locking and shared
# memory SQLite cannot rely on: fuse.* is any FUSE filesystem (sshfs, s3fs,
# glusterfs, ...; fuseblk, a local disk through FUSE such as ntfs-3g, is not one).
NETWORK = frozenset({"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "9p", "afs",
                     "coda", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "ocfs2", "gfs2",
                     "davfs", "fuse", "virtiofs"})
_ESCAPE = re.compile(r"\\([0-7]{3})")


class Mount(NamedTuple):
    point: str  # where it is mounted
    fstype: str  # e.g. "ext4", "nfs4", "fuse.sshfs"
    source: str  # e.g. "/dev/sda1", "server:/export"


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a mountinfo table, in its order (later mounts cover earlier ones).
    Lines that do not parse are skipped."""
    mounts = []
    for line in text.splitlines():
        fields, sep, rest = line.partition(" - ")
        fields, rest = fields.split(" "), rest.split(" ")
        if not sep or len(fields) < 5 or len(rest) < 2:
            continue
        mounts.append(Mount(_unescape(fields[4]), rest[0], _unescape(rest[1])))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def is_network(fstype: str) -> bool:
    return fstype in NETWORK or fstype.startswith("fuse.")


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount holding `path` (absolute, symlinks resolved): the last mounted of the
    deepest mount points that contain it."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") + "/"
        if (path + "/").startswith(point) and (best is None or len(point) >= len(best.point.rstrip("/") + "/")):
            best = mount
    return best


def existing_dir(path: str) -> str:
    """The real path of the nearest directory of `path` that exists (the file and its
    directory may not exist yet: they are created on the filesystem of that one)."""
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory) and directory != os.path.dirname(directory):
        directory = os.path.dirname(directory)
    return os.path.realpath(directory)


def refuse_network_fs(url: str, base_dir: str | None, allowed: bool, config_path: str | None = None,
                      mountinfo: str = MOUNTINFO) -> None:
    """Raise ConfigError (storage.url) when `url` is an SQLite database on a network
    filesystem, unless `allowed`. An unreadable mount table refuses nothing."""
    if allowed or not url.lower().startswith("sqlite:"):
        return
    from runtime.storage import sqlite_path

    path = sqlite_path(url, base_dir)
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as file:
            mounts = parse_mountinfo(file.read())
    except OSError:
        return
    mount = mount_of(existing_dir(path), mounts)
    if mount is not None and is_network(mount.fstype):
        raise ConfigError(
            f"SQLite database {path} is on a network filesystem ({mount.fstype} {mount.source} "
            f"mounted at {mount.point}): SQLite's WAL mode needs memory shared by every process "
            f"using the database, which only processes of one host share, and network "
            f"filesystems' locks are unreliable, so the database could be corrupted; put it on "
            f"a local disk or use PostgreSQL, or set [storage] allow_network_fs = true if only "
            f"ever this one host uses it", config_path, "storage.url")
