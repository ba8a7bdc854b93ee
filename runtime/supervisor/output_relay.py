"""What jobs print, relayed to the supervisor's stdout one line at a time, labelled.

Workers' stdout and stderr are one pipe per worker. The supervisor reads it
and prefixes each line with the job that printed it (`job 42 (mod:fn) | ...`)
or, between jobs, the worker (`worker 1234 | ...`); its own log lines go to
stderr, so the two never mix. Before a worker's result is handled its output
pipe is drained, so everything a job printed is labelled with that job.
The supervisor never blocks on its stdout: when nobody reads it fast enough,
job output is dropped and the loss counted and logged.
"""

from __future__ import annotations

import logging
import os
import select
import time

import orjson

log = logging.getLogger("jobrt")

MAX_LINE = 8192  # longer lines are split: a job printing without newlines cannot grow a buffer


class OutputRelay:
    def __init__(self, fd: int = 1, json_lines: bool = False):
        self.fd = fd
        self.json_lines = json_lines
        self.partial: dict[int, bytearray] = {}  # per worker pid
        self.dropped = 0
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)

    def feed(self, pid: int, data: bytes, label: str, job_id: int | None) -> None:
        buffer = self.partial.setdefault(pid, bytearray())
        buffer += data
        lines = []
        while True:
            cut = buffer.find(b"\n")
            if cut < 0 and len(buffer) >= MAX_LINE:
                cut = MAX_LINE - 1
            if cut < 0:
                break
            lines.append(bytes(buffer[:cut]).rstrip(b"\r"))
            del buffer[:cut + 1]
        if lines:
            self._emit(lines, label, job_id)

    def flush(self, pid: int, label: str, job_id: int | None) -> None:
        """Emit a worker's unfinished last line (its job ended, or it died)."""
        buffer = self.partial.pop(pid, None)
        if buffer:
            self._emit([bytes(buffer)], label, job_id)

    def _emit(self, lines: list[bytes], label: str, job_id: int | None) -> None:
        if self.json_lines:
            text = b"".join(orjson.dumps({"ts": time.time(), "job": job_id, "source": label,
                                          "output": line.decode("utf-8", "replace")}) + b"\n"
                            for line in lines)
        else:
            prefix = label.encode() + b" | "
            text = b"".join(prefix + line + b"\n" for line in lines)
        view = memoryview(text)
        while view:
            if not self._poll.poll(0):
                self._drop(len(view))
                return
            try:
                view = view[os.write(self.fd, view[:4096]):]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self._drop(len(view))
                return

    def _drop(self, count: int) -> None:
        if self.dropped == 0:
            log.warning("job output dropped: the supervisor's stdout is not keeping up")
        self.dropped += count
