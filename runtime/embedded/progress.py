"""A live progress line for the embedded Pool: done, failed, rate, ETA.

Drawn on stderr only when stderr is a terminal, at most ten times a second,
redrawn in place, and ended with a newline when the pool closes. When stderr
is a file or a pipe it writes nothing at all.
"""

from __future__ import annotations

import os

REDRAW_EVERY = 0.1  # seconds
BAR = 20  # characters


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def describe(done: int, failed: int, skipped: int, total: int | None, rate: float) -> str:
    """`[######----] 1,234/5,000 25%  3 failed  12 skipped  410/s  ETA 9s`"""
    parts = []
    if total:
        filled = min(BAR, BAR * done // total)
        parts.append(f"[{'#' * filled}{'-' * (BAR - filled)}] {done:,}/{total:,} {100 * done // total}%")
    else:
        parts.append(f"{done:,} done")
    if failed:
        parts.append(f"{failed:,} failed")
    if skipped:
        parts.append(f"{skipped:,} skipped")
    parts.append(f"{rate:,.0f}/s")
    if total and rate > 0 and done < total:
        parts.append(f"ETA {_duration((total - done) / rate)}")
    return "  ".join(parts)


class ProgressLine:
    def __init__(self, fd: int = 2):
        self.fd = fd
        self.enabled = os.isatty(fd)
        self.shown = False
        self.next_draw = 0.0
        self.rate = 0.0
        self.last = (0.0, 0)  # (when, done) of the last rate sample

    def due(self) -> float:
        return self.next_draw if self.enabled else float("inf")

    def update(self, now: float, done: int, failed: int, skipped: int, total: int | None,
               force: bool = False) -> None:
        if not self.enabled or (now < self.next_draw and not force):
            return
        when, before = self.last
        if when and now > when:
            sample = (done - before) / (now - when)
            self.rate = sample if not self.rate else 0.7 * self.rate + 0.3 * sample
        self.last = (now, done)
        self.next_draw = now + REDRAW_EVERY
        self._write("\r\x1b[K" + describe(done, failed, skipped, total, self.rate))
        self.shown = True

    def finish(self, now: float, done: int, failed: int, skipped: int, total: int | None) -> None:
        if self.enabled and (self.shown or done):
            self.update(now, done, failed, skipped, total, force=True)
            self._write("\n")
            self.shown = False

    def _write(self, text: str) -> None:
        data = text.encode()
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            self.enabled = False  # the terminal went away: stop drawing, never fail the pool
