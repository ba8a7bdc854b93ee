"""Per-minute counts of one supervisor's jobs, for the dashboard's charts.

    runs end --Stats.finished--> MinuteTally.finished (a dict cell per minute, queue, name)
    claims ----Stats.claimed---> MinuteTally.claimed  (each job's wait since available_at)
    heartbeat --take()--> storage.record_minutes(rows): one small transaction, added up

Nothing here touches storage per job: the loop's heartbeat writes what was counted since
its last write (storage adds the rows of every write and supervisor together), and gives
the rows back to be written again when storage is down. Minutes are wall-clock minutes.
"""

from __future__ import annotations

from runtime.storage.browse import MinuteRow

KEPT_S = 8 * 24 * 3600  # seconds of minute rows kept: a week's charts, and a day to spare
MAX_CELLS = 100_000  # cells kept while storage is down; the oldest minutes go first


class MinuteTally:
    """(minute, queue, name) -> [runs, succeeded, failed, runtime sum, runtime max, waits,
    wait sum, wait max], since the last take()."""

    def __init__(self) -> None:
        self.cells: dict[tuple[int, str, str], list] = {}

    def finished(self, at: float, queue: str, name: str, outcome: str, seconds: float) -> None:
        cell = self._cell(at, queue, name)
        cell[0] += 1
        if outcome == "succeeded":
            cell[1] += 1
        elif outcome == "failed":
            cell[2] += 1
        seconds = seconds if seconds >= 0 else 0.0
        cell[3] += seconds
        if seconds > cell[4]:
            cell[4] = seconds

    def claimed(self, at: float, jobs) -> None:
        for job in jobs:
            if job.available_at is None:
                continue
            wait = max(0.0, at - job.available_at)
            cell = self._cell(at, job.queue, job.name)
            cell[5] += 1
            cell[6] += wait
            if wait > cell[7]:
                cell[7] = wait

    def _cell(self, at: float, queue: str, name: str) -> list:
        key = (int(at // 60) * 60, queue, name)
        cell = self.cells.get(key)
        if cell is None:
            if len(self.cells) >= MAX_CELLS:
                del self.cells[min(self.cells)]
            cell = self.cells[key] = [0, 0, 0, 0.0, 0.0, 0, 0.0, 0.0]
        return cell

    def take(self) -> list[MinuteRow]:
        """The rows counted since the last take, and a fresh start."""
        cells, self.cells = self.cells, {}
        return [MinuteRow(*key, *cell) for key, cell in sorted(cells.items())]

    def give_back(self, rows: list[MinuteRow]) -> None:
        """Rows that could not be written: counted again, to be written with the next ones."""
        for row in rows:
            cell = self._cell(row.minute, row.queue, row.name)
            for i, value in enumerate(row[3:]):
                cell[i] = max(cell[i], value) if i in (4, 7) else cell[i] + value


class MinuteWriter:
    """The heartbeat's part: write the tally's rows, and now and then prune old minutes."""

    PRUNE_EVERY = 600.0  # seconds between prunes of the minute rows

    def __init__(self, tally: MinuteTally):
        self.tally = tally
        self.next_prune = 0.0

    def write(self, storage, wall: float) -> None:
        """One transaction when anything was counted; raises StorageError (the rows are kept
        for the next write)."""
        rows = self.tally.take()
        try:
            if rows:
                storage.record_minutes(rows)
        except BaseException:
            self.tally.give_back(rows)
            raise
        if wall >= self.next_prune:
            self.next_prune = wall + self.PRUNE_EVERY
            storage.prune_minutes(wall - KEPT_S)
