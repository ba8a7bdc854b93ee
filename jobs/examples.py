"""Example jobs: enqueue any of them right away, e.g.

    jobrt enqueue --config supervisor.toml jobs.examples:echo --args '["hello"]'

The well-behaved ones come first; the misbehaving ones below them are what the
tests and demos use to show that a bad job cannot hurt the runtime.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import orjson

import runtime
from runtime import job


@job
def noop() -> None:
    """Does nothing: the benchmark job."""


@job
def tick_time() -> float | None:
    """Returns the tick time its schedule enqueued it for (runtime.scheduled_at())."""
    return runtime.scheduled_at()


@job
def echo(*args, **kwargs):
    """Returns its arguments, so you can see them in `jobrt job ID`."""
    return {"args": list(args), "kwargs": kwargs}


@job
def add(a: float, b: float) -> float:
    return a + b


@job
def sleep(seconds: float = 1.0) -> float:
    """Sleeps in Python, politely."""
    time.sleep(seconds)
    return seconds


@job(tries=1)
def fail(message: str = "this job always fails") -> None:
    """Raises an exception: ends in the failed-jobs store with its traceback."""
    raise RuntimeError(message)


@job(tries=3, backoff=0)
def flaky(succeed_on: int = 2) -> int:
    """Fails until its attempt number reaches `succeed_on`."""
    if runtime.attempt() < succeed_on:
        raise RuntimeError(f"attempt {runtime.attempt()} fails on purpose")
    return runtime.attempt()


@job
def stamp() -> float:
    """Returns the wall-clock time it started: the pickup-latency benchmark job."""
    return time.time()


def append_json(path: str, document) -> None:
    """Append `document` as one JSON line with O_APPEND, so the lines of concurrent runs
    never interleave: how the example callbacks and steps leave notes for the tests."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, orjson.dumps(document) + b"\n")
    finally:
        os.close(fd)


@job
def append_line(path: str, text: str, pause: float = 0.0) -> None:
    """Appends `text job_id attempt pid` to a file with O_APPEND (tests count runs with it),
    then sleeps `pause` seconds."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{text} {runtime.job_id()} {runtime.attempt()} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(pause)


@job
def wait_for_file(path: str, limit: float = 120.0) -> int:
    """Runs until `path` exists (at most `limit` seconds): a job a test ends when it wants.
    Returns its attempt number."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return runtime.attempt()


def _float_word(delay):
    """JSON cannot carry NaN or infinities: these jobs take them as words ("nan", "1e309")."""
    try:
        return float(delay) if isinstance(delay, str) else delay
    except ValueError:
        return delay


@job
def release_forever(delay: float | str = 0.0) -> None:
    """Releases itself every time: `tries` ends it."""
    runtime.release(_float_word(delay))


@job
def release_raw(delay) -> None:
    """Raises jobrt's Release with any delay, around release()'s own check (a hostile job)."""
    raise runtime.job_context.Release(_float_word(delay))


@job
def release_once(delay: float = 0.0) -> int:
    """Releases itself back to the queue on its first attempt, succeeds on the next."""
    if runtime.attempt() == 1:
        runtime.release(delay)
    return runtime.attempt()


# -- misbehaving jobs ------------------------------------------------------------

@job(tries=1)
def busy_loop() -> None:
    """Spins in pure Python forever; only a hard timeout stops it."""
    while True:
        pass


@job(tries=1)
def c_sleep(seconds: int = 3600, stamp_path: str | None = None) -> None:
    """Blocks inside one C call (libc sleep); Python signal handlers never run."""
    if stamp_path:
        with open(stamp_path, "w") as out:
            out.write(repr(time.time()))
    ctypes.CDLL(None).sleep(seconds)


@job(tries=1)
def ignore_sigterm(seconds: float = 3600) -> None:
    """Ignores SIGTERM and sleeps: a polite stop request does nothing."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)


@job(tries=1)
def crash(code: int = 3) -> None:
    """Kills its own worker with os._exit: no result, no exception."""
    sys.stdout.flush()
    os._exit(code)


@job(tries=1)
def segfault() -> None:
    """Dereferences a null pointer: the worker dies by SIGSEGV."""
    ctypes.string_at(0)


@job(tries=1)
def memory_hog(megabytes: int = 200, hold: float = 0.0) -> int:
    """Allocates and touches `megabytes` MiB, keeps them, optionally sleeps."""
    block = bytearray(megabytes * 1024 * 1024)
    for index in range(0, len(block), 4096):
        block[index] = 1
    _HOARD.append(block)  # leaks on purpose: the worker stays big after the job
    time.sleep(hold)
    return megabytes


_HOARD: list = []


@job(tries=1)
def spawn_and_hang(pid_path: str | None = None) -> None:
    """Starts a child process and hangs: a timeout must kill both."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    if pid_path:
        with open(pid_path, "w") as out:
            out.write(str(child.pid))
    time.sleep(3600)


@job(tries=1)
def daemonize(pid_path: str, release_path: str) -> None:
    """Double-forks a daemon that sleeps (it is orphaned while this job still runs), writes
    its pid, then runs until `release_path` exists."""
    reader, writer = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(writer, str(os.getpid()).encode())
            time.sleep(3600)
        os._exit(0)
    os.close(writer)
    with open(pid_path, "w") as out:
        out.write(os.read(reader, 32).decode())
    os.wait()
    while not os.path.exists(release_path):
        time.sleep(0.01)


@job(tries=1)
def escape_and_hang(pid_path: str) -> None:
    """Starts a child in a new session (out of the worker's process group) and hangs."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True)
    with open(pid_path, "w") as out:
        out.write(str(child.pid))
    time.sleep(3600)


@job(tries=1)
def block_signals(seconds: int = 3600) -> None:
    """Blocks every signal it can, then sleeps in C."""
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
    ctypes.CDLL(None).sleep(seconds)


@job(tries=1)
def sys_exit(code: int = 2) -> None:
    sys.exit(code)


@job(tries=1)
def keyboard_interrupt() -> None:
    raise KeyboardInterrupt


class _Unprintable(Exception):
    def __str__(self):
        raise ValueError("no str for you")


@job(tries=1)
def unprintable_error() -> None:
    """Raises an exception whose str() raises."""
    raise _Unprintable()


@job(tries=1)
def close_fds() -> None:
    """Closes every file descriptor above stderr, as careless daemonizing code does."""
    os.closerange(3, 1 << 16)


@job(tries=1)
def scribble_fds() -> None:
    """Writes garbage to every descriptor it can write to above stderr."""
    for fd in range(3, 1 << 11):
        try:
            os.write(fd, b"\xff" * 64)
        except OSError:
            pass


@job(tries=1)
def shout(megabytes: int = 8) -> int:
    """Prints megabytes to stdout and stderr."""
    line = "x" * 1023 + "\n"
    for _ in range(megabytes * 1024):
        sys.stdout.write(line)
        sys.stderr.write(line)
    return megabytes


@job(tries=1)
def raise_text(text: str, repeat: int = 1, surrogate: bool = False) -> None:
    """Raises a ValueError whose message is `text` repeated (a lone surrogate appended when
    `surrogate`: file names from os.listdir carry them)."""
    raise ValueError(text * repeat + ("\udcff" if surrogate else ""))


@job(tries=1)
def fail_text(text: str, surrogate: bool = False) -> None:
    """Calls fail() with `text` (a lone surrogate appended when `surrogate`)."""
    runtime.fail(text + ("\ud800" if surrogate else ""))


@job(tries=1)
def forge_frame(kind: int, header: str, body: str = "") -> None:
    """Writes a frame of its own making to its worker's result pipe: `header` is raw text
    (JSON or not), in which $id and $attempt become this run's numbers."""
    import resource
    import struct

    head = header.replace("$id", str(runtime.job_id())).replace("$attempt", str(runtime.attempt()))
    head_bytes, body_bytes = head.encode("utf-8", "surrogatepass"), body.encode("utf-8", "surrogatepass")
    size = 5 + len(head_bytes) + len(body_bytes)
    fd = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024) - 1  # where the worker keeps it
    os.write(fd, struct.pack(">IBI", size, kind, len(head_bytes)) + head_bytes + body_bytes)


@job(tries=1)
def non_json_result():
    return object()


@job(tries=1)
def huge_result(megabytes: int = 50) -> str:
    return "x" * (megabytes * 1024 * 1024)


@job
def leak(megabytes: int, path: str) -> int:
    """Leaks `megabytes` MiB per run (kept by the worker) and logs the run like append_line."""
    block = bytearray(megabytes * 1024 * 1024)
    for index in range(0, len(block), 4096):
        block[index] = 1
    _HOARD.append(block)
    append_line(path, "leak")
    return len(_HOARD)


@job
def whoami() -> dict:
    """The identity, limits and storage-credential environment a job runs with."""
    import resource

    return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "pgpassword": os.environ.get("PGPASSWORD")}


@job
def blob(kilobytes: int = 16) -> str:
    """Returns a result of `kilobytes` KiB: fills storage quickly."""
    time.sleep(0.005)
    return "x" * (kilobytes * 1024)


@job
def say(text: str = "hello") -> None:
    """Prints `text` to stdout and stderr: the supervisor relays both, labelled with the job."""
    print(f"{text} (stdout)")
    print(f"{text} (stderr)", file=sys.stderr)


@job(unique=True, unique_for=3600)
def once_per_text(text: str) -> str:
    """Unique by its argument for an hour: a second enqueue of the same text while the
    first is pending or running returns the first's id."""
    return text


@job(tries=2, backoff=0)
def fail_with_hook(path: str, seconds: float = 0.0) -> None:
    """Fails (after `seconds`, so a short timeout kills it instead): its failure hook
    appends the failed job's record to `path`."""
    time.sleep(seconds)
    raise RuntimeError(f"failed with a hook: {path}")


@fail_with_hook.on_failure
def fail_with_hook_failed(record: dict) -> None:
    with open(record["args"][0], "a") as out:
        out.write(json.dumps(record) + "\n")


@job
def span(path: str, pause: float = 0.05) -> None:
    """Appends `started ended job_id attempt` (wall-clock seconds) to `path` once it has run
    for `pause` seconds: tests check which runs overlapped."""
    started = time.time()
    time.sleep(pause)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{started!r} {time.time()!r} {runtime.job_id()} {runtime.attempt()}\n".encode())
    finally:
        os.close(fd)


@job(tries=1, without_overlapping=lambda event_id, *args, **kwargs: f"event-{event_id}")
def process_event_data(event_id: int, path: str, pause: float = 0.05) -> None:
    """Meet2Be's ProcessEventData: `WithoutOverlapping($this->event->id)` becomes a key made
    from the job's arguments, so two runs for one event never overlap; other events' do."""
    span(path, pause)


@job(tries=1, without_overlapping=True)
def hold_key(pid_path: str, release_path: str) -> int:
    """Holds its overlap key (its job name) until `release_path` exists; writes its
    worker's pid to `pid_path` first, so a test can kill the worker holding the key."""
    with open(pid_path + ".tmp", "w") as out:
        out.write(str(os.getpid()))
    os.rename(pid_path + ".tmp", pid_path)
    return wait_for_file(release_path)


@job(rate_limit="api-calls")
def call_api(path: str) -> None:
    """Limited by the config's `[rate_limits] api-calls` (the seeds' RateLimited('api-calls',
    30, 60)): every run appends its line, as append_line does."""
    append_line(path, "call")


@job
def enqueue_from_job(config: str, text: str) -> int:
    """Enqueues an echo of `text` into its own database, in its own worker process (Laravel
    jobs dispatch jobs all the time); returns the new job's id."""
    with runtime.connect(config=config) as q:
        return q.enqueue(echo, text)
