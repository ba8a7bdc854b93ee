"""The operators' verbs of the storage contract (runtime.storage.base.Storage has them):
queues paused and restart requests, rows every supervisor on the storage reads on its
heartbeat (and when a client on its host wakes it), so one `jobrt pause` or `jobrt restart`
acts on every host; and pruning the failed-jobs store by age."""

from __future__ import annotations

from typing import NamedTuple


class Controls(NamedTuple):
    """What a supervisor reads on each heartbeat: the paused queues (sorted) and the
    generation of the latest restart request (0: none was ever made)."""

    paused: tuple[str, ...]
    restart: int

    @classmethod
    def from_rows(cls, rows) -> "Controls":
        """From the SQL backends' `controls` rows: (queue, None) per paused queue, and
        (None, generation) per restart request."""
        return cls(tuple(sorted(queue for queue, _ in rows if queue is not None)),
                   max((generation for queue, generation in rows if queue is None), default=0))


def made_by(ids: list[int], jobs: list) -> list:
    """(id, job) of the first job given each id: a later one with the same unique key in the
    same enqueue got that job's id, and did not make it."""
    return list({job_id: job for job_id, job in reversed(list(zip(ids, jobs)))}.items())


class OpsVerbs:
    """Pause, resume, restart requests and prune_failed (each backend implements them)."""

    def pause_queues(self, queues: list[str], now: float) -> list[str]:
        """Pause `queues`: no supervisor claims their jobs until they are resumed (running
        ones finish). One row per paused queue, which stays until resumed, whether the
        queue holds jobs or not. Returns those of `queues` not paused before, sorted."""
        raise NotImplementedError

    def resume_queues(self, queues: list[str]) -> list[str]:
        """Resume `queues`; returns those of them that were paused, sorted."""
        raise NotImplementedError

    def paused_queues(self) -> dict[str, float]:
        """queue -> when it was paused, for every paused queue, in queue order."""
        raise NotImplementedError

    def request_restart(self, now: float) -> int:
        """Ask every supervisor to replace its workers (as SIGHUP does): a new restart
        generation, returned; a supervisor acts once on each generation newer than the
        one it saw at its start or last restart."""
        raise NotImplementedError

    def controls(self) -> Controls:
        """The paused queues and the restart generation, in one cheap read of a few rows."""
        raise NotImplementedError

    def prune_failed(self, before: float, limit: int) -> int:
        """Delete up to `limit` failed jobs whose finished_at is earlier than `before`,
        oldest first (then lowest id), through the index of failed jobs; how many. Call
        again while it returns `limit` (short transactions, as `prune`)."""
        raise NotImplementedError
