"""Which worker takes the next job, and how many jobs a pool can take now: pure reads of
its workers and of how long each job name took on average.

A worker may be sent a second job while it runs a first (`prefetch`) only when every job it
holds is known to be short, so a slow job never holds a waiting job hostage; a worker whose
last job before recycling is already sent takes nothing more.
"""

from __future__ import annotations

SHORT_JOB = 0.005  # seconds: a job this short on average may have another queued behind it


def is_short(worker, durations: dict[str, float]) -> bool:
    for run in worker.runs:
        average = durations.get(run.job.name)
        if average is None or average > SHORT_JOB:
            return False
    return True


def pick(workers, durations: dict[str, float], prefetch: int):
    """An idle worker, else the least loaded one that may take one more; None if none may."""
    best = None
    for worker in workers:
        if worker.retiring or worker.killed or worker.standby:
            continue
        queued = len(worker.runs)
        if worker.max_jobs and worker.jobs_done + sum(run.calls for run in worker.runs) >= worker.max_jobs:
            continue  # its last job is already sent: it is about to be recycled
        if queued == 0:
            return worker
        if queued < prefetch and (best is None or queued < len(best.runs)) and is_short(worker, durations):
            best = worker
    return best


def free_slots(workers, durations: dict[str, float], prefetch: int) -> int:
    """Jobs the workers could start at once: one per idle worker, more behind short jobs."""
    slots = 0
    for worker in workers:
        if worker.active and not worker.standby:
            queued = len(worker.runs)
            if queued == 0:
                slots += 1
            elif queued < prefetch and is_short(worker, durations):
                slots += prefetch - queued
    return slots
