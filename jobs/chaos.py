"""Jobs for the chaos tests (tests/chaos) and benchmarks/chaos.py.

Each run first appends one line `TEXT job_id attempt pid` to an O_APPEND log
(jobs.examples:append_line), then sleeps `pause` seconds, so the checker can
count runs per job. There are two names because the supervisor schedules them
differently: `quick` stays under its 5 ms SHORT_JOB on average, so a second job
is sent ahead to a worker running one (a killed worker must hand that one back
unrun); `slow` is not, and is usually still running when a kill lands (its run
happened: the job must be retried, not lost).
"""

from jobs import examples
from runtime import job


@job
def quick(path: str, pause: float = 0.002) -> None:
    examples.append_line(path, "quick", pause)


@job
def slow(path: str, pause: float = 0.03) -> None:
    examples.append_line(path, "slow", pause)
