"""The selector over worker pipes and pidfds: the `loop` a WorkerPool talks to.

Shared by the supervisor and the embedded Pool, so both wait on their workers
the same way. A selector key's data is `(kind, obj, pool)`: the worker kinds
(read, exit, write) go to the worker's pool, what workers print (output) to
the relay; `call` keys carry their own handler (`obj(mask)`), for whatever
else the owner listens to.
"""

from __future__ import annotations

import selectors
import time

from runtime.workers.pool import WorkerPool
from runtime.workers.process import read_ready, spawn
from runtime.workers.records import Worker


class EventLoop:
    def __init__(self, relay):
        self.selector = selectors.DefaultSelector()
        self.relay = relay  # where what jobs print goes (an OutputRelay); None: not captured
        self.writing: set[int] = set()  # pipes to workers with bytes waiting to be written
        self.zygote = None  # the supervisor's (runtime.workers.zygote_handle); None: fork workers here

    def fork_worker(self, setup, body, capture_output: bool):
        """A new worker's Child: cloned by the zygote when there is one, else forked here."""
        if self.zygote is not None:
            child = self.zygote.spawn(setup)
            if child is not None:
                return child
            self.zygote = None
        return spawn(body, capture_output)

    def watch(self, worker: Worker, pool: WorkerPool) -> None:
        self.selector.register(worker.child.from_child, selectors.EVENT_READ, ("read", worker, pool))
        if worker.child.output >= 0:
            self.selector.register(worker.child.output, selectors.EVENT_READ, ("output", worker, pool))
        self.selector.register(worker.child.pidfd, selectors.EVENT_READ, ("exit", worker, pool))

    def watch_call(self, fd: int, handler) -> None:
        self.selector.register(fd, selectors.EVENT_READ, ("call", handler, None))

    def unwatch_fd(self, fd: int) -> None:
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def unwatch_output(self, worker: Worker) -> None:
        self.unwatch_fd(worker.child.output)

    def unwatch_reader(self, worker: Worker) -> None:
        self.unwatch_fd(worker.child.from_child)

    def want_write(self, worker: Worker, on: bool, pool: WorkerPool | None = None) -> None:
        fd = worker.child.to_child
        if on and fd not in self.writing:
            self.selector.register(fd, selectors.EVENT_WRITE, ("write", worker, pool))
            self.writing.add(fd)
        elif not on and fd in self.writing:
            self.selector.unregister(fd)
            self.writing.discard(fd)

    def unwatch(self, worker: Worker) -> None:
        self.unwatch_reader(worker)
        self.unwatch_output(worker)
        self.want_write(worker, False)
        self.unwatch_fd(worker.child.pidfd)

    def wait(self, timeout: float | None) -> None:
        """Wait up to `timeout` seconds (None: until something happens) and handle what did."""
        for key, mask in self.selector.select(timeout):
            kind, obj, pool = key.data
            now = time.monotonic()
            if kind == "read":
                if obj.child.from_child >= 0:  # not closed by an exit handled this turn
                    pool.on_readable(obj, now)
            elif kind == "output":
                if obj.child.output >= 0:
                    self.relay_output(obj)
            elif kind == "exit":
                if obj.child.pidfd >= 0:
                    pool.on_exit(obj, now)
                    self.worker_exited()
            elif kind == "write":
                if obj.child.to_child >= 0:
                    pool.on_writable(obj)
            else:
                obj(mask)

    def relay_output(self, worker: Worker, end_of_job: bool = False) -> None:
        """Relay what the worker's jobs printed, labelled with the job running now."""
        fd = worker.child.output
        if fd < 0:
            return  # not captured: the workers write to this process's own stdout and stderr
        if worker.runs:
            job = worker.runs[0].job
            label, job_id = f"job {job.id} ({job.name})", job.id
        else:
            label, job_id = f"worker {worker.pid}", None
        relay = self.relay
        while (data := read_ready(fd, 1 << 16)) is not None:
            if not data:
                self.unwatch_output(worker)
                break
            relay.feed(worker.pid, data, label, job_id)
        if end_of_job:
            relay.flush(worker.pid, label, job_id)

    def worker_exited(self) -> None:
        """Called after a worker's death was handled."""
