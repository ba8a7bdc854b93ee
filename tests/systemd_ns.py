"""A real systemd for tests, booted as PID 1 of its own namespaces and kept off the host.

`SystemdNamespace(run_dir).boot()` starts `/lib/systemd/systemd --system --unit=basic.target`
in new pid, mount, cgroup, UTS and IPC namespaces; `systemctl()` talks to it over
its private socket (nsenter, no D-Bus); `destroy()` SIGKILLs it by its host pid, which ends
the pid namespace and every process in it, and waits until none is left.

A system manager left to itself changes the machine it boots. Here it must not, so before
systemd runs (the boot script checks, and refuses to exec systemd otherwise):

- /run, /tmp and /var/tmp are fresh tmpfs mounts of the namespace. systemd-tmpfiles (whose
  `D /tmp` rule empties /tmp) could not reach the host's /tmp even if it ran, and it does
  not run: its four units are masked, as is every other unit file of the host except the
  targets, the slices and journald (volatile, reading no kernel log). So nothing starts but
  basic.target, journald and what a test installs in /run/systemd/system.
- Generators do not run (an empty tmpfs over their directories): none turns /etc/fstab,
  getty or init scripts into units.
- `container=` is set, so systemd skips what a real PID 1 does to a machine (kernel
  modules, system clock and timezone, printk, console reset); /etc and /var (but for
  the private /var/tmp, and unless the run directory is in them), /proc/sys and /sys
  are read-only (it would raise fs.file-max); the hostname it sets is the namespace's.
  The network namespace stays the host's, as a service's does: clients outside wake
  the supervisor through its abstract socket (runtime/storage/wakeup.py).
- It lives in a cgroup of its own, the root of its cgroup namespace, with a cgroup2 mount
  of just that subtree: it cannot move or see the host's processes.
- Its own log goes to its journal, and to `console.log` in the run directory before journald runs.

Every path it writes outside the namespace's tmpfs mounts is in the run directory, which
`destroy()` removes, with the cgroup.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from tests.conftest import wait_for

SYSTEMD = "/lib/systemd/systemd"
TOOLS = ("unshare", "nsenter", "systemctl", "mount", "sh")
UNIT_DIRS = ("/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system",
             "/lib/systemd/system")
GENERATOR_DIRS = ("/usr/lib/systemd/system-generators", "/usr/local/lib/systemd/system-generators",
                  "/etc/systemd/system-generators", "/lib/systemd/system-generators")
UNIT_SUFFIXES = (".service", ".socket", ".mount", ".automount", ".swap", ".timer", ".path",
                 ".device", ".scope", ".target", ".slice")
# Never boot without these: systemd-tmpfiles-setup empties /tmp.
TMPFILES_MASKS = ("systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service",
                  "systemd-tmpfiles-clean.service", "systemd-tmpfiles-clean.timer")
# Masked even where the host has no such file (a generator or the mount table could make one).
ALWAYS_MASKED = TMPFILES_MASKS + (
    "tmp.mount", "var-tmp.mount", "systemd-journal-flush.service", "systemd-journald-audit.socket",
    "systemd-journald-dev-log.socket", "syslog.socket", "getty.target", "console-getty.service",
    "getty-static.service", "systemd-logind.service", "systemd-networkd.service",
    "systemd-networkd.socket", "systemd-networkd-wait-online.service", "systemd-resolved.service",
    "systemd-timesyncd.service", "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "systemd-udevd.service",
    "systemd-udevd-control.socket", "systemd-udevd-kernel.socket", "systemd-udev-trigger.service",
    "systemd-remount-fs.service", "systemd-sysctl.service", "systemd-modules-load.service",
    "systemd-random-seed.service", "systemd-machine-id-commit.service", "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service", "systemd-binfmt.service", "kmod-static-nodes.service",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount", "dev-mqueue.mount",
    "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount", "systemd-pstore.service",
    "systemd-sysusers.service", "ldconfig.service", "systemd-hwdb-update.service",
    "systemd-firstboot.service", "systemd-repart.service", "systemd-fsck-root.service",
    "systemd-boot-update.service", "systemd-ask-password-console.path", "systemd-ask-password-wall.path",
    "dbus.socket", "dbus.service", "postgresql.service", "cron.service", "ssh.service",
)
KEPT = ("systemd-journald.service", "systemd-journald.socket")
JOURNALD_CONF = """\
# jobrt tests: the journal lives in the namespace's /run only, and reads nothing of the host's.
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
"""

# Runs as PID 1 of the new namespaces; $1 is the run directory. Prepares the mounts, checks
# the masks and the private /tmp, and only then becomes systemd.
BOOT_SCRIPT = r"""
set -eu
run=$1
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
cp -a "$run/stage/." /run/
for unit in %(tmpfiles)s; do
  if [ "$(readlink "/run/systemd/system/$unit")" != /dev/null ]; then
    echo "systemd_ns: $unit is not masked; not booting systemd" >&2
    exit 97
  fi
done
if [ ! -s /etc/machine-id ]; then
  echo "systemd_ns: no /etc/machine-id: systemd would write one; not booting systemd" >&2
  exit 96
fi
shift
for dir in "$@"; do  # /etc and /var, unless the run directory is under one
  mount --bind "$dir" "$dir"
  mount -o remount,bind,ro "$dir"
done
# A checkout (and its .venv) under /tmp stays visible at its path, and nothing else of the
# host's /tmp: held in the private /run while the private /tmp is mounted over it.
keep=0
for dir in ${JOBRT_NS_KEEP:-}; do
  keep=$((keep + 1))
  mkdir -p "/run/keep/$keep"
  mount --bind "$dir" "/run/keep/$keep"
done
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
keep=0
for dir in ${JOBRT_NS_KEEP:-}; do
  keep=$((keep + 1))
  mkdir -p "$dir"
  mount --bind "/run/keep/$keep" "$dir"
done
for dir in %(generators)s; do
  if [ -d "$dir" ]; then mount -t tmpfs -o ro,mode=0755 tmpfs "$dir"; fi
done
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
if [ -e /dev/console ]; then mount --bind "$run/console.log" /dev/console; fi
for dir in /tmp /var/tmp /run; do
  if [ "$(stat -f -c %%T "$dir")" != tmpfs ]; then
    echo "systemd_ns: $dir is not the namespace's own tmpfs; not booting systemd" >&2
    exit 98
  fi
done
exec env -i container=jobrt-test PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  %(systemd)s --system --unit=basic.target
""" % {"tmpfiles": " ".join(TMPFILES_MASKS), "generators": " ".join(GENERATOR_DIRS),
       "systemd": SYSTEMD}

# Runs on the host: moves itself into the cgroup made for systemd ($1), then becomes unshare.
# The cgroup namespace unshare makes is rooted there.
CGROUP_SCRIPT = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'


def missing_prerequisites() -> str | None:
    """What this host lacks to boot a real systemd (root aside), or None."""
    if not os.access(SYSTEMD, os.X_OK):
        return f"systemd is not installed (no {SYSTEMD}): apt-get install systemd"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (util-linux, systemd)"
    if cgroup2_root() is None:
        return "no cgroup2 hierarchy is mounted"
    return None


def cgroup2_root() -> str | None:
    """Where the host mounts the cgroup2 hierarchy (its root), or None."""
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            dash = fields.index("-")
            if fields[dash + 1] == "cgroup2" and fields[3] == "/":
                return fields[4]
    return None


def masks() -> list[str]:
    """Every unit the host's unit files name, but the targets, slices and journald."""
    names = set(ALWAYS_MASKED)
    for directory in UNIT_DIRS:
        if not os.path.isdir(directory):
            continue
        for entry in os.listdir(directory):
            path = os.path.join(directory, entry)
            if entry.endswith((".wants", ".requires", ".upholds")) and os.path.isdir(path):
                names.update(os.listdir(path))
            else:
                names.add(entry)
    return sorted(name for name in names
                  if name.endswith(UNIT_SUFFIXES) and not name.endswith((".target", ".slice"))
                  and name not in KEPT)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies (unshare --kill-child
    passes it on to systemd), so not even a killed pytest leaves a systemd running."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_directory(preferred: Path) -> Path:
    """Where a namespace's run directory can go: `preferred`, unless it is under /tmp or
    /var/tmp, which the namespace replaces with its own (then under /var/lib)."""
    base = preferred if under_tmp(preferred) is None else Path("/var/lib")
    return base / f".systemd-run-{uuid.uuid4().hex[:12]}"


def under_tmp(path: Path) -> str | None:
    """/tmp or /var/tmp, when `path` is under one of them (which the namespace replaces)."""
    real = os.path.realpath(path)
    return next((d for d in ("/tmp", "/var/tmp") if real == d or real.startswith(d + "/")), None)


class SystemdNamespace:
    def __init__(self, run_dir: Path):
        """`run_dir`: a directory to create (see `run_directory`), seen alike inside and out."""
        if under_tmp(Path(run_dir).parent):
            raise ValueError(f"{run_dir}: the namespace has its own /tmp and /var/tmp")
        self.run_dir = Path(run_dir)
        self.cgroup: Path | None = None
        self.launcher: subprocess.Popen | None = None
        self.systemd: psutil.Process | None = None
        self.pidns: int | None = None

    @property
    def pid(self) -> int:
        """systemd's pid on the host."""
        return self.systemd.pid

    @property
    def root(self) -> Path:
        """The namespace's / seen from the host (its /run, /tmp are its own)."""
        return Path(f"/proc/{self.pid}/root")

    def boot(self, timeout: float = 60.0) -> None:
        self.run_dir.mkdir(mode=0o755)
        stage = self.run_dir / "stage" / "systemd"
        (stage / "system").mkdir(parents=True)
        for name in masks():
            os.symlink("/dev/null", stage / "system" / name)
        for name in TMPFILES_MASKS:
            assert os.readlink(stage / "system" / name) == "/dev/null", name
        (stage / "journald.conf.d").mkdir()
        (stage / "journald.conf.d" / "jobrt-test.conf").write_text(JOURNALD_CONF)
        (self.run_dir / "console.log").touch()
        self.cgroup = Path(cgroup2_root()) / f"jobrt-systemd-test-{uuid.uuid4().hex[:12]}"
        self.cgroup.mkdir()
        with open(self.run_dir / "launcher.log", "wb") as log:
            self.launcher = subprocess.Popen(
                ["sh", "-c", CGROUP_SCRIPT, "sh", str(self.cgroup),
                 "unshare", "--pid", "--kill-child", "--mount-proc", "--mount", "--propagation",
                 "private", "--cgroup", "--uts", "--ipc",
                 "sh", "-c", BOOT_SCRIPT, "sh", str(self.run_dir), *self._read_only()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "JOBRT_NS_KEEP": " ".join(self.keep)},
                start_new_session=True, preexec_fn=_die_with_parent)
        self.systemd = self._wait(self._systemd_process, timeout, "systemd to start")
        self.pidns = os.stat(f"/proc/{self.pid}/ns/pid").st_ino
        self._wait(lambda: self.state() in ("running", "degraded"), timeout,
                   "systemd to finish booting basic.target")

    @property
    def keep(self) -> list[str]:
        """Directories under /tmp or /var/tmp the service must see: the checkout (with its
        .venv) and the interpreter's, when a clone was made there (CI may clone into /tmp)."""
        wanted = {os.path.realpath(Path(__file__).resolve().parent.parent),
                  os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
        return sorted(d for d in wanted if under_tmp(Path(d)) and " " not in d)

    def _read_only(self) -> list[str]:
        """/etc and /var, but not the one the run directory (the service's database) is in."""
        run_dir = os.path.realpath(self.run_dir)
        return [d for d in ("/etc", "/var") if not run_dir.startswith(d + "/")]

    def _systemd_process(self):
        """The launcher's child once it runs systemd (before: the boot script's shell)."""
        if self.launcher.poll() is not None:
            raise RuntimeError(f"the namespace ended (exit {self.launcher.returncode}) before "
                               f"systemd ran:\n{self.logs()}")
        for child in psutil.Process(self.launcher.pid).children():
            try:
                if child.exe() == os.path.realpath(SYSTEMD):
                    return child
            except psutil.Error:
                continue
        return None

    def _wait(self, condition, timeout: float, what: str):
        try:
            return wait_for(condition, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.logs()}") from None

    def state(self) -> str:
        if self.launcher.poll() is not None:
            raise RuntimeError(f"systemd exited ({self.launcher.returncode}):\n{self.logs()}")
        return self.systemctl("is-system-running", check=False).stdout.strip()

    def run(self, *command: str, check: bool = True, timeout: float = 120.0,
            input: str | None = None) -> subprocess.CompletedProcess:
        """A command inside the namespace (its pid and mount namespaces)."""
        result = subprocess.run(["nsenter", "-t", str(self.pid), "-p", "-m", "--", *command],
                                capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}): "
                                 f"{result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str | None = None) -> str:
        args = ["journalctl", "--no-pager", "-o", "short-monotonic"] + (["-u", unit] if unit else [])
        result = self.run(*args, check=False)
        return result.stdout + result.stderr

    def install(self, name: str, text: str) -> None:
        """Put a unit (or a drop-in, `name` = "x.service.d/y.conf") in the namespace's
        /run/systemd/system, and daemon-reload."""
        path = self.root / "run" / "systemd" / "system" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        self.systemctl("daemon-reload")

    def host_process(self, ns_pid: int) -> psutil.Process | None:
        """The host's view of process `ns_pid` of the namespace, or None."""
        for process in psutil.process_iter():
            try:
                if os.stat(f"/proc/{process.pid}/ns/pid").st_ino != self.pidns:
                    continue
                with open(f"/proc/{process.pid}/status") as status:
                    for line in status:
                        if line.startswith("NSpid:") and int(line.split()[-1]) == ns_pid:
                            return process
            except (OSError, psutil.Error):
                continue
        return None

    def processes(self) -> list[int]:
        """Host pids of every process still in the namespace's pid namespace or cgroup."""
        found = set()
        if self.pidns is not None:
            for process in psutil.process_iter():
                try:
                    if os.stat(f"/proc/{process.pid}/ns/pid").st_ino == self.pidns:
                        found.add(process.pid)
                except OSError:
                    continue
        if self.cgroup is not None and self.cgroup.exists():
            for directory, _, _ in os.walk(self.cgroup):
                try:
                    found.update(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
                except OSError:
                    continue
        return sorted(found)

    def logs(self) -> str:
        parts = []
        for name in ("launcher.log", "console.log"):
            try:
                parts.append(f"--- {name} ---\n" + (self.run_dir / name).read_text(errors="replace")[-6000:])
            except OSError:
                pass
        return "\n".join(parts)

    def destroy(self) -> None:
        """SIGKILL systemd by its host pid (the kernel then kills every process of its pid
        namespace), wait until none remains, remove its cgroup and the run directory."""
        try:
            if self.systemd is not None:
                try:
                    self.systemd.kill()  # psutil checks it is still that process
                except psutil.NoSuchProcess:
                    pass
            elif self.launcher is not None and self.launcher.poll() is None:
                # No systemd yet: the boot script's shell may be PID 1 of the namespace.
                for child in psutil.Process(self.launcher.pid).children():
                    child.kill()
            if self.launcher is not None:
                try:
                    self.launcher.wait(60)
                except subprocess.TimeoutExpired:
                    self.launcher.kill()  # our unshare; --kill-child passes the SIGKILL on
                    self.launcher.wait(60)
            self._wait(lambda: not self.processes(), 60, "every process of the namespace to end")
        finally:
            if self.cgroup is not None and self.cgroup.exists():
                for directory, _, _ in os.walk(self.cgroup, topdown=False):
                    try:
                        os.rmdir(directory)
                    except OSError:
                        pass
            shutil.rmtree(self.run_dir, ignore_errors=True)
