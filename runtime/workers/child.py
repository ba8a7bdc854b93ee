"""The worker: the body of a forked child. It runs jobs, never touches storage.

    pipe in  --RUN/EVENT/STOP frames-->  worker loop  --DONE/BYE frames-->  pipe out

A worker runs the jobs it is sent, in order, one at a time, and reports each
result. Before starting each job it reads whatever else has arrived, so a
STOP sent while it was busy is seen before the next job starts: jobs not yet
started are handed back untouched, and the runtime.events hooks of EVENT frames
run first (worker_events). It leaves only through os._exit, never returning
into the supervisor's code (DESIGN invariant 4).
"""

from __future__ import annotations

import fcntl
import os
import resource
import select
import signal
import sys
import termios
import time
import traceback
from collections import deque


from runtime import events, job_context
from runtime.registry import JobSpec, reimport
from runtime.workers import protocol, sandbox, worker_events
from runtime.workers.process import die_with_parent, owned_bytes, set_name, write_all

EXIT_CRASH = 70  # the worker loop itself failed: a job broke its pipes, or a bug in jobrt
EXIT_BOOT = 71  # the worker could not start (its job modules did not import): it ran nothing
SECRET_ENVIRONMENT = ("PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE")  # storage credentials jobs never need
_RESET_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                  signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE)


def become_worker(read_fd: int, write_fd: int, parent_pid: int, registry: dict[str, JobSpec],
                  setup: sandbox.ChildSetup) -> None:
    """Entry point in the child right after fork. Never returns."""
    code = EXIT_BOOT
    try:
        read_fd, write_fd = _detach(read_fd, write_fd, parent_pid)
        try:
            if setup.fresh_modules:
                registry = reimport(setup.fresh_modules, setup.module_path)
            sandbox.apply(setup)
        except BaseException as exc:  # noqa: BLE001 - the supervisor logs why, and runs nothing here
            write_all(write_fd, protocol.frame(protocol.BOOT, protocol.clean_text(
                f"{describe(exc)}\n{format_traceback(exc)}", protocol.MAX_TRACEBACK)))
            raise
        code = EXIT_CRASH
        _serve(read_fd, write_fd, registry, setup.max_memory)
        code = 0
    except BaseException:  # noqa: BLE001 - report anything, then leave via os._exit
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        os._exit(code)


def _detach(read_fd: int, write_fd: int, parent_pid: int) -> tuple[int, int]:
    # The parent's signal self-pipe must not receive this child's signals.
    signal.set_wakeup_fd(-1)
    for signum in _RESET_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    # Own process group: a timeout kill takes whatever the job spawned too.
    os.setpgid(0, 0)
    die_with_parent()  # not Linux: the pipe EOF still ends an idle worker
    set_name("jobrt-worker")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)
    # Move our pipes out of the way of fds a job opens and closes (daemonizing code
    # often closes 3..N), close-on-exec so a job's subprocesses do not hold them, and
    # close every other inherited fd: storage connections, other workers' pipes, the
    # supervisor's sockets. Their Python objects are never used here.
    top = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024)
    high_read, high_write = top - 2, top - 1
    os.dup2(read_fd, high_read, inheritable=False)
    os.dup2(write_fd, high_write, inheritable=False)
    os.closerange(3, high_read)
    os.closerange(high_write + 1, os.sysconf("SC_OPEN_MAX"))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        # What jobs print must reach fd 1 and 2 (the output pipe), even when the parent had
        # replaced sys.stdout (a test's capture, a notebook's stream) with one on another fd.
        stream = getattr(sys, name)
        try:
            direct = stream.fileno() == fd
        except Exception:  # noqa: BLE001 - no fileno at all
            direct = False
        if not direct:
            setattr(sys, name, open(fd, "w", buffering=1, closefd=False, errors="backslashreplace"))
    for name in SECRET_ENVIRONMENT:
        os.environ.pop(name, None)  # the child's own copy: the supervisor's is untouched
    random = sys.modules.get("random")  # not imported: a job that imports it gets a fresh seed
    if random is not None:
        random.seed()  # forked children would otherwise share one random sequence
    return high_read, high_write


def _serve(read_fd: int, write_fd: int, registry: dict[str, JobSpec], max_memory: int) -> None:
    reader = protocol.FrameReader()
    queued: deque = deque()
    notices: list = []  # EVENT frames not yet run
    hooks = events.registered()  # after a reload's reimport: the new code's hooks
    stopping = False
    pid = os.getpid()
    os.set_blocking(read_fd, False)
    while True:
        try:
            data = os.read(read_fd, 1 << 16)  # from the heap: 1 MiB would be an mmap per read
        except BlockingIOError:
            data = None
        if data == b"":
            return  # the supervisor is gone
        if data:
            for kind, header, body in reader.feed(data):
                if kind == protocol.RUN:
                    queued.append((header, body))
                elif kind == protocol.STOP:
                    stopping = True
                elif kind == protocol.EVENT:
                    notices.append((header, body))
        if notices:
            worker_events.notify(hooks, notices)
        if stopping:
            for header, _ in queued:
                write_all(write_fd, protocol.done_frame(
                    protocol.Done(header[0], header[1], protocol.RETURNED, 0.0, 0, 0.0, False)))
            write_all(write_fd, protocol.BYE_FRAME)
            return
        if not queued:
            select.select([read_fd], [], [])
            continue
        header, payload = queued.popleft()
        status, body, delay, seconds = run_job(registry, hooks, header, payload)
        owned = owned_bytes(pid, max_memory) if max_memory else 0
        write_all(write_fd, protocol.done_frame(
            protocol.Done(header[0], header[1], status, seconds, owned, delay, _printed()), body))


def run_job(registry, hooks, header, payload: bytes) -> tuple[str, bytes, float, float]:
    """Run the job of one RUN frame (its header and payload) with the runtime.events hooks
    the frame asks for; (status, body, release delay, seconds). Also what runtime.testing's
    eager queue runs jobs with, in its own process."""
    if len(header) == 3:  # no hooks, no context: the common case, kept as lean as before
        job_id, attempt, name = header
        return _run(registry, job_id, attempt, name, payload)
    job_id, attempt, name = header[0], header[1], header[2]
    context = header[-1] if len(header) in (4, 8) else None  # protocol.run_frame*
    ran = len(header) >= 7 and name in registry  # hooks; a job never run has no events
    if ran:
        worker_events.before(hooks, header, payload)
    status, body, delay, seconds = _run(registry, job_id, attempt, name, payload, context)
    if ran:
        worker_events.after(hooks, header, payload, status, body)
    return status, body, delay, seconds


_FIONREAD_BUFFER = bytearray(4)


def _printed() -> bool:
    """Whether output waits in our stdout/stderr pipe, so the supervisor drains it (and
    labels it with this job) before the result; a quiet job costs it nothing."""
    try:
        fcntl.ioctl(1, termios.FIONREAD, _FIONREAD_BUFFER)
    except OSError:
        return True
    return _FIONREAD_BUFFER != b"\0\0\0\0"



def describe(exc: BaseException) -> str:
    """`Type: message`, even when the exception's own str() raises."""
    try:
        text = str(exc)
    except BaseException as inner:  # noqa: BLE001
        text = f"<str() of the exception raised {type(inner).__name__}>"
    if isinstance(exc, SystemExit):
        return f"the job called sys.exit({text})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def format_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not take the worker down
        return describe(exc)


def _run(registry, job_id, attempt, name, payload, context=None) -> tuple[str, bytes, float, float]:
    """Run one job (`context`: what job_context tells it of its workflow); returns (status,
    body, release delay, seconds)."""
    spec = registry.get(name)
    if spec is None:
        return protocol.FAIL, protocol.error_body(
            f"job {name!r} is not registered in this worker's job modules; it was not run", None), 0.0, 0.0
    token = job_context.enter(job_id, attempt, context)
    started = time.perf_counter()
    try:
        body = spec.invoke(payload)
        status, delay = protocol.OK, 0.0
    except job_context.Release as exc:
        status, body, delay = protocol.RELEASE, b"", exc.delay
        if not job_context.valid_delay(delay):  # a Release raised by hand, around release()'s check
            status, body, delay = protocol.ERROR, protocol.error_body(
                job_context.bad_delay(delay), format_traceback(exc)), 0.0
    except job_context.Fail as exc:
        status, body, delay = protocol.FAIL, protocol.error_body(exc.reason, None), 0.0
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are job errors too
        status, body, delay = protocol.ERROR, protocol.error_body(describe(exc), format_traceback(exc)), 0.0
    seconds = time.perf_counter() - started
    job_context.leave(token)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # os._exit would drop what the job printed
        except BaseException:  # noqa: BLE001
            pass
    return status, body, delay, seconds
