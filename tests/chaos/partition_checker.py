"""The checker of a network partition run (Jepsen's queue checker, for jobrt's jobs).

    read_runs(directory) -> [Run]   the runs the jobs.partitions:record jobs logged
                                    on every host (runs-HOST.log: start, ticks, end)
    check(enqueued, states, runs, windows, margin, slack) -> Report

What must hold (Report.problems() names each breach):
- lost 0: every enqueued job ended `succeeded` and has a run in the logs;
- unexpected 0: no run of a job that was never enqueued;
- no overlap beyond `margin`: two runs of one job never run at the same time for
  longer than `margin` seconds (a host that lost its database must stop its runs
  before another host may take its jobs over; any two runs count, on different
  hosts or, after a rescue, on the same one). Wall times come from one clock, as
  every test host runs on this machine;
- duplicates only from a partition: a job that ran more than once has a run in
  progress, on a host the partition cut off, during a partition window widened by
  `slack` seconds at each end (a run that ended just before a cut may not have had
  its result written yet; a heal takes effect within the time TCP takes to resend).

A run that never logged its end (its worker was killed) is taken to have ended
jobs.partitions.TICK after its last line: it would have written a `tick` by then.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

from jobs.partitions import TICK

HUNG_DATABASE = "hung database"  # the window's kind in which every host lost the database


@dataclass(frozen=True)
class Window:
    """One partition: `hosts` lost the database from `start` to `end` (wall seconds)."""

    kind: str  # "cut", "black hole" or HUNG_DATABASE
    hosts: frozenset[str]
    start: float
    end: float


@dataclass
class Run:
    """One run of one job on one host, from its first logged line to its end."""

    job_id: int
    attempt: int
    host: str
    pid: int
    start: float
    end: float  # its `end` line, or its last line + TICK when it never ended
    ended: bool = False

    def overlap(self, other: Run) -> float:
        """Seconds both runs were running at once (<= 0 when they did not)."""
        return min(self.end, other.end) - max(self.start, other.start)


def read_runs(directory: Path) -> list[Run]:
    """Every run logged in `directory`'s runs-*.log files, in the order of their first line."""
    runs: dict[tuple, Run] = {}
    for log in sorted(directory.glob("runs-*.log")):
        for number, text in enumerate(log.read_text().splitlines(), 1):
            parse_line(text, f"{log}:{number}", runs)
    return sorted(runs.values(), key=lambda run: run.start)


def parse_line(text: str, where: str, runs: dict[tuple, Run]) -> None:
    """Add one log line to `runs` (keyed by job, attempt, host, pid). A torn, foreign or
    out-of-order line raises: each line is one O_APPEND write, so one would mean the
    logs cannot be trusted."""
    try:
        what, job_id, attempt, host, pid, wall = text.split()
        key = (int(job_id), int(attempt), host, int(pid))
        wall = float(wall)
    except ValueError:
        raise ValueError(f"{where}: not a run line: {text!r}") from None
    run = runs.get(key)
    if what == "start" and run is None:
        runs[key] = Run(*key, start=wall, end=wall + TICK)
    elif what in ("tick", "end") and run is not None and not run.ended and wall >= run.start:
        run.end, run.ended = (wall, True) if what == "end" else (wall + TICK, False)
    else:
        raise ValueError(f"{where}: a {what!r} line out of order: {text!r}")


@dataclass
class Report:
    jobs: int
    runs: int
    partitions: int
    margin: float
    lost: list[int]  # not succeeded, unknown to storage, or succeeded with no run logged
    unexpected: list[int]  # ran, never enqueued
    duplicated: int  # runs beyond the first, summed over jobs
    unexplained: list[int]  # ran more than once with no run cut off by a partition
    overlaps: list[tuple[int, str, str, float]] = field(default_factory=list)  # (job, host, host, s) > margin
    max_overlap: float = 0.0  # seconds: the longest time two runs of one job ran at once

    def figures(self) -> dict:
        return {"jobs": self.jobs, "runs": self.runs, "partitions": self.partitions,
                "lost": len(self.lost), "unexpected": len(self.unexpected),
                "duplicated": self.duplicated, "unexplained_duplicates": len(self.unexplained),
                "overlaps": len(self.overlaps), "max_overlap_s": round(self.max_overlap, 3)}

    def problems(self) -> list[str]:
        """Every invariant this run broke, in words; empty when all held."""
        found = []

        def note(what, items):
            if items:
                found.append(f"{what}: {len(items)} (first: {sorted(items)[:10]})")

        note("lost jobs (not succeeded, or no run logged)", self.lost)
        note("unexpected runs (job never enqueued)", self.unexpected)
        note("jobs run more than once with no run cut off by a partition", self.unexplained)
        note(f"runs of one job overlapping for more than {self.margin:g} s (job, host, host, seconds)",
             [(job, a, b, round(s, 3)) for job, a, b, s in self.overlaps])
        return found


def check(enqueued: list[int], states: dict[int, str | None], runs: list[Run], windows: list[Window],
          margin: float, slack: float) -> Report:
    """Compare the runs with storage's end `states` (job id -> state, None when storage does
    not know the job) and the partition `windows` the nemesis made."""
    per_job: dict[int, list[Run]] = collections.defaultdict(list)
    for run in runs:
        per_job[run.job_id].append(run)
    known = set(enqueued)
    lost = [job_id for job_id in enqueued if states.get(job_id) != "succeeded" or not per_job.get(job_id)]
    overlaps, longest = [], 0.0
    unexplained = []
    for job_id, job_runs in per_job.items():
        for index, run in enumerate(job_runs):
            for other in job_runs[index + 1:]:
                seconds = run.overlap(other)
                longest = max(longest, seconds)
                if seconds > margin:
                    overlaps.append((job_id, run.host, other.host, seconds))
        if len(job_runs) > 1 and not any(_cut_off(run, windows, slack) for run in job_runs):
            unexplained.append(job_id)
    return Report(
        jobs=len(enqueued), runs=len(runs), partitions=len(windows), margin=margin, lost=lost,
        unexpected=sorted(set(per_job) - known),
        duplicated=sum(len(job_runs) - 1 for job_runs in per_job.values()),
        unexplained=sorted(unexplained), overlaps=overlaps, max_overlap=longest)


def _cut_off(run: Run, windows: list[Window], slack: float) -> bool:
    """Whether `run` was in progress on a host a partition cut off, during that partition
    (widened by `slack` seconds at each end)."""
    return any(run.host in window.hosts and run.start <= window.end + slack and run.end >= window.start - slack
               for window in windows)
