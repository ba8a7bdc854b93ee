"""When `jobrt start --until-empty`, `--max-jobs N` or `--max-time S` stops the supervisor:
for cron-driven hosts and CI steps, which want it to work and then exit 0.

    each loop turn, after results are written and jobs claimed --> reached()? --> Supervisor.stop
                                                                                (SIGTERM's clean stop)

The stop itself is SIGTERM's: claimed jobs not started go back to pending, running ones
get their pool's grace to finish (then are killed and returned), no job is lost.

--until-empty: no job is due on the queues this supervisor serves (pending with
available_at <= now, from storage's counters) and none is held here (claimed, running,
or its result not yet written). Delayed jobs not yet due do not keep it running; a job
that settles into a due one (a retry without backoff, a chain's next step) does.
--max-jobs: this supervisor saw N runs end (succeeded, failed, retried or released).
Runs already under way then, and jobs already sent ahead to a worker, still finish.
--max-time: S seconds after the supervisor started. The rules combine: the first met stops.
"""

from __future__ import annotations

import time

from runtime.errors import StorageError

EMPTY_CHECK_EVERY = 0.2  # seconds between two reads of the queues' counts while nothing is held


class StopRules:
    def __init__(self, until_empty: bool = False, max_jobs: int | None = None,
                 max_time: float | None = None, now: float | None = None):
        self.until_empty = until_empty
        self.max_jobs = max_jobs
        self.max_time = max_time
        started = time.monotonic() if now is None else now
        self.deadline = started + max_time if max_time else float("inf")
        self.next_empty_check = 0.0 if until_empty else float("inf")

    def next_timer(self) -> float:
        """The nearest moment (monotonic) a rule may be met without any event to wake the loop."""
        return min(self.deadline, self.next_empty_check)

    def reached(self, now: float, supervisor) -> str | None:
        """Why the supervisor should stop now, or None. Reads its stats, pools, results not
        yet written and, for --until-empty, storage's counts."""
        if self.max_jobs is not None and supervisor.stats.done >= self.max_jobs:
            return f"--max-jobs {self.max_jobs} reached ({supervisor.stats.done} jobs ran)"
        if now >= self.deadline:
            return f"--max-time {self.max_time:g} s reached"
        if self.until_empty and now >= self.next_empty_check:
            self.next_empty_check = now + EMPTY_CHECK_EVERY
            queues = _empty_queues(supervisor)
            if queues is not None:
                return f"--until-empty: no job is due on queues {', '.join(queues)} and none runs here"
        return None


def _empty_queues(supervisor) -> list[str] | None:
    """The queues served here, when none holds a due job and this supervisor holds none
    (nor a result to write); else None. Unknown while storage is unreachable: None."""
    exchange = supervisor.exchange
    if exchange.outbox or exchange.down:
        return None
    for pool in supervisor.pools:
        if pool.busy()[0] or any(True for _ in pool.held()):
            return None
    queues = list(dict.fromkeys(queue for pool in supervisor.pools for queue in pool.config.queues))
    try:
        counts = supervisor.storage.counts(time.time())
    except StorageError as exc:
        exchange.failed(time.monotonic(), exc)
        return None
    # A paused queue's jobs wait for `jobrt resume`, not for this supervisor.
    if any(counts.get(queue, {}).get("pending", 0) for queue in queues if queue not in exchange.paused):
        return None
    return queues
