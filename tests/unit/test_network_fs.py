"""SQLite on a network filesystem: the mount table parsed from real mountinfo lines, and
the supervisor's refusal checked on a real file with a mount table given as a file."""

from __future__ import annotations

import pytest

from runtime.errors import ConfigError
from runtime.storage.network_fs import Mount, is_network, mount_of, parse_mountinfo, refuse_network_fs

# Real lines (proc(5), a laptop, a Kubernetes node), with a space escaped as \040.
MOUNTINFO = r"""22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
25 22 0:23 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
41 22 0:40 / /srv/nfs rw,relatime shared:20 - nfs4 fileserver:/export/jobs rw,vers=4.2,rsize=1048576
42 41 8:3 / /srv/nfs/local rw,relatime shared:21 - xfs /dev/sda3 rw
43 22 0:41 / /mnt/my\040share rw,relatime shared:22 - cifs //nas/share rw,vers=3.1.1
44 22 0:42 / /home/me/remote rw,nosuid,nodev,relatime shared:23 - fuse.sshfs me@host:/data rw,user_id=0
45 22 0:43 / /mnt/usb rw,relatime shared:24 - fuseblk /dev/sdb1 rw,user_id=0
46 22 0:44 / /mnt/host rw,relatime shared:25 - 9p hostshare rw,trans=virtio
47 22 0:45 / /tmp rw,nosuid,nodev shared:26 - tmpfs tmpfs rw
this line is not a mount
48 22 0:46 / /srv/nfs rw,relatime shared:27 - ext4 /dev/sdc1 rw
"""


def test_mountinfo_lines_parse_into_mount_point_type_and_source():
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 11  # the line that is not a mount is skipped
    assert mounts[0] == Mount("/", "ext4", "/dev/sda2")
    assert mounts[3] == Mount("/srv/nfs", "nfs4", "fileserver:/export/jobs")
    assert mounts[5] == Mount("/mnt/my share", "cifs", "//nas/share")


@pytest.mark.parametrize("path, fstype", [
    ("/var/lib/jobrt", "ext4"),
    ("/srv/nfs2/jobs", "ext4"),  # /srv/nfs is not a prefix of /srv/nfs2
    ("/srv/nfs/local/db", "xfs"),  # a local mount inside the network one
    ("/mnt/my share/jobs", "cifs"),
    ("/home/me/remote", "fuse.sshfs"),
    ("/mnt/host/x", "9p"),
    ("/mnt/usb/jobs", "fuseblk"),
])
def test_the_deepest_mount_holding_a_path_is_found(path, fstype):
    mounts = parse_mountinfo(MOUNTINFO)[:10]  # without the last line's mount over /srv/nfs
    assert mount_of(path, mounts).fstype == fstype


def test_a_later_mount_over_the_same_point_covers_the_earlier():
    assert mount_of("/srv/nfs/jobs", parse_mountinfo(MOUNTINFO)).fstype == "ext4"


@pytest.mark.parametrize("fstype, network", [
    ("nfs", True), ("nfs4", True), ("cifs", True), ("smb3", True), ("9p", True), ("fuse.sshfs", True),
    ("fuse", True), ("ceph", True), ("ext4", False), ("xfs", False), ("tmpfs", False),
    ("fuseblk", False), ("overlay", False)])
def test_network_filesystem_types(fstype, network):
    assert is_network(fstype) is network


def mount_table(tmp_path, fstype: str) -> str:
    """A mount table in which tmp_path is a mount of `fstype`."""
    table = tmp_path / "mountinfo"
    table.write_text(f"22 1 8:2 / / rw shared:1 - ext4 /dev/sda2 rw\n"
                     f"41 22 0:40 / {tmp_path} rw shared:20 - {fstype} server:/export rw\n")
    return str(table)


def test_a_database_on_a_network_filesystem_is_refused_with_the_fix(tmp_path):
    (tmp_path / "jobs.db").write_bytes(b"")
    with pytest.raises(ConfigError) as error:
        refuse_network_fs("sqlite:///jobs.db", str(tmp_path), False, "supervisor.toml",
                          mountinfo=mount_table(tmp_path, "nfs4"))
    message = str(error.value)
    assert message.startswith("supervisor.toml: storage.url: SQLite database ")
    assert f"nfs4 server:/export mounted at {tmp_path}" in message
    assert "WAL mode needs memory shared" in message and "allow_network_fs = true" in message
    assert "\n" not in message


def test_a_database_not_created_yet_is_judged_by_the_directory_it_will_be_in(tmp_path):
    with pytest.raises(ConfigError):
        refuse_network_fs("sqlite:///var/new/jobs.db", str(tmp_path), False,
                          mountinfo=mount_table(tmp_path, "cifs"))


def test_local_filesystems_allowed_and_postgres_never_checked(tmp_path):
    refuse_network_fs("sqlite:///jobs.db", str(tmp_path), False, mountinfo=mount_table(tmp_path, "ext4"))
    refuse_network_fs("sqlite:///jobs.db", str(tmp_path), True, mountinfo=mount_table(tmp_path, "nfs"))
    refuse_network_fs("postgresql://u@h/db", str(tmp_path), False, mountinfo=mount_table(tmp_path, "nfs"))
    refuse_network_fs("sqlite:///jobs.db", str(tmp_path), False, mountinfo=str(tmp_path / "missing"))
    refuse_network_fs("sqlite:///jobs.db", str(tmp_path), False)  # this host's real table
