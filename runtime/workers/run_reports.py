"""How a WorkerPool hears from its workers: the frames on their result pipes become Outcomes
(a job's DONE, a planned exit's BYE, a failed boot's BOOT), and a pipe that carries garbage
costs its worker its life, as a crash would.

A part of WorkerPool (its base class), kept apart from the pool's bookkeeping of workers:
these methods write only WorkerPool's own fields.
"""

from __future__ import annotations

import time

from runtime.workers import protocol, retry_rules
from runtime.workers.process import read_ready
from runtime.workers.records import Run, Worker

EWMA = 0.2  # weight of the newest run in a job name's average duration

# Bytes asked of a pipe per read. os.read allocates that much first: 1 MiB went through
# mmap, mremap and munmap on every read (three system calls per result in a drain), 64 KiB
# comes from the heap; a fuller pipe takes more reads.
READ_SIZE = 1 << 16


class RunReports:
    """The reading side of WorkerPool."""

    results_are_json = True  # the supervisor's: results go to storage (the embedded Pool's are pickled)

    def on_readable(self, worker: Worker, now: float) -> None:
        fd = worker.child.from_child
        while fd >= 0 and (data := read_ready(fd, READ_SIZE)) is not None:
            if not data:
                self.loop.unwatch_reader(worker)
                return
            try:
                frames = worker.reader.feed(data)
            except protocol.ProtocolError as exc:
                self._broken(worker, f"the worker's result pipe carried garbage ({exc}); "
                                     "did the job write to an inherited file descriptor?", now)
                return
            for kind, header, body in frames:
                if kind == protocol.DONE:
                    try:
                        done = protocol.parse_done(header)
                    except protocol.ProtocolError as exc:
                        self._broken(worker, f"the worker sent {exc}; did the job write to the "
                                             "worker's pipes?", now)
                        return
                    if done.printed:  # all of that output is labelled with this job
                        self.loop.relay_output(worker, end_of_job=True)
                    if not self._on_done(worker, done, body, now):
                        return
                elif kind == protocol.BYE:
                    worker.said_bye = True
                elif kind == protocol.BOOT:
                    worker.boot_error = str(header)[:protocol.MAX_ERROR]
                else:
                    self._broken(worker, f"the worker sent a frame of unknown kind {kind}; did the "
                                         "job write to the worker's pipes?", now)
                    return
            if len(data) < READ_SIZE:
                return

    def _broken(self, worker: Worker, error: str, now: float) -> None:
        self.loop.unwatch_reader(worker)
        if worker.runs and not worker.killed:
            run = worker.runs.popleft()
            self._unreported(run, retry_rules.errored(run.job, run.options, self.config, error, None,
                                                      time.time(), retry_rules.CRASH))
            self.stats.finished(run.job.queue, "crashed", now - run.started, run.job.name)
        self.kill(worker, "crash")
        self._requeue(worker)

    def _on_done(self, worker: Worker, done: protocol.Done, body: bytes, now: float) -> bool:
        """Settle the run a DONE frame reports; False when the frame was bogus and the
        worker is being killed for it."""
        if worker.killed:
            return False  # its run was already settled when it was killed
        job_id, attempt, status, seconds, owned, delay, _printed = done
        if not worker.runs or worker.runs[0].job.id != job_id or worker.runs[0].job.attempt != attempt:
            self._broken(worker, f"the worker reported job {job_id} attempt {attempt}, which it was "
                                 "not running", now)
            return False
        if status in (protocol.ERROR, protocol.FAIL):
            try:
                error, tb = protocol.parse_error(body)
            except protocol.ProtocolError as exc:
                self._broken(worker, f"the worker sent {exc}", now)
                return False
        elif status == protocol.OK and self.results_are_json and body != b"null" and not protocol.is_json(body):
            # A worker's results are JSON (payload.dump_result); anything else came from a
            # job writing to its worker's pipe, and stored, it would break every reader.
            self._broken(worker, "the worker sent a result that is not JSON; did the job write "
                                 "to the worker's pipes?", now)
            return False
        run = worker.runs.popleft()
        job = run.job
        wall = time.time()
        if status == protocol.RETURNED:
            self._give_back(run, wall)
        else:
            worker.jobs_done += run.calls
            name = job.name
            average = self.durations.get(name)
            self.durations[name] = seconds if average is None else average + EWMA * (seconds - average)
            if status in (protocol.ERROR, protocol.FAIL):
                self.log.info("job %d (%s) attempt %d: %s", job.id, name, attempt, error)
            else:
                error = tb = None
            outcome, counted = retry_rules.reported(run, self.config, status, body, error, tb, delay, wall)
            self._outcomes.append(outcome)
            if run.told is not None:
                self.event_relay.ended(run, outcome, status)
            self.stats.finished(job.queue, counted, seconds, name)
            self.failed_boots = 0
        if worker.runs:
            worker.runs[0].start(now)
        if worker.active:
            if self.setup.max_memory and owned > self.setup.max_memory:
                self.retire(worker, "max_memory")
            elif worker.max_jobs and worker.jobs_done >= worker.max_jobs:
                self.retire(worker, "max_jobs")
        return True

    def _give_back(self, run: Run, wall: float) -> None:
        """A job sent but never started: back to the buffer, or to storage when stopping."""
        if self.stopping:
            self._outcomes.append(retry_rules.returned(run.job, wall))
        else:
            self.buffer.appendleft(run)

    def _requeue(self, worker: Worker) -> None:
        wall = time.time()
        while worker.runs:
            self._give_back(worker.runs.pop(), wall)

