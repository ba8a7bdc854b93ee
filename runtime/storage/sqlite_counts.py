"""The job counters of the SQLite backend, kept by the transactions that move jobs.

job_counts (migration 4) holds how many jobs there are per (level, slot, state,
queue, name); counts(), status, health and metrics read it instead of the jobs
table. Every write transaction adds the jobs it inserts, deletes or moves to a
Tally and applies it before its COMMIT, so the counters change atomically with
the jobs: one upsert per changed key per transaction, where per-row triggers cost
nine per job. A claim and a settle in one exchange cancel out on the running key.
"""

from __future__ import annotations

from collections import Counter
from math import floor
from typing import Iterable

from runtime.numbers import INT_MAX
from runtime.storage.base import PENDING

INT_MIN = -INT_MAX - 1


def slot(at: float, width: float) -> int:
    """floor(at / width), saturated as SQLite's CAST saturates, so a job delayed past
    any real date still lands where migration 4's fill and the counts query put it."""
    s = floor(at / width)
    return INT_MAX if s > INT_MAX else INT_MIN if s < INT_MIN else s


class Tally:
    """One transaction's changes to job_counts: key -> change of n."""

    __slots__ = ("changes", "wake")

    def __init__(self) -> None:
        self.changes: dict[tuple, int] = {}
        # The transaction made jobs no supervisor waits for (a batch's callbacks, made by a
        # settle): wake the listeners once it committed.
        self.wake = False

    def add(self, state: str, queue: str, name: str, at: float | None, n: int) -> None:
        """n jobs (negative: leaving) in `state`; `at`, their available_at, counts for
        pending jobs only: they are kept per 16 s, 4096 s and 1048576 s slot of it."""
        changes = self.changes
        if state == PENDING:
            for key in ((0, slot(at, 16.0), PENDING, queue, ""),
                        (1, slot(at, 4096.0), PENDING, queue, ""),
                        (2, slot(at, 1048576.0), PENDING, queue, name)):
                changes[key] = changes.get(key, 0) + n
        else:
            key = (-1, 0, state, queue, name)
            changes[key] = changes.get(key, 0) + n

    def add_all(self, state: str, jobs: Iterable[tuple[str, str, float | None]], n: int) -> None:
        """`add` for each (queue, name, available_at) of `jobs`, equal ones counted together."""
        for (queue, name, at), k in Counter(jobs).items():
            self.add(state, queue, name, at, n * k)

    def move(self, old: str, new: str, jobs: list[tuple[str, str, float | None]]) -> None:
        """`jobs` went from state `old` to `new`, keeping their available_at."""
        grouped = Counter(jobs)
        for (queue, name, at), k in grouped.items():
            self.add(old, queue, name, at, -k)
            self.add(new, queue, name, at, k)

    def apply(self, conn, sql: str) -> None:
        rows = [key + (n,) for key, n in self.changes.items() if n]
        if rows:
            conn.executemany(sql, rows)
        self.changes.clear()
