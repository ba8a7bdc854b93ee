"""without_overlapping and rate_limit as users meet them, with `jobrt start`: on SQLite with
one supervisor and on PostgreSQL with two. Runs with one overlap key never overlap; a
worker killed while it holds a key frees it; no 1-second window holds more starts than a
"5/s" limit allows, and no attempt is used waiting; the options' errors name the option."""

from __future__ import annotations

import os
import signal

import pytest

from runtime import PayloadError, connect, job
from tests.conftest import END_STATES, jobrt, wait_for, write_config


def spans(path) -> dict[int, tuple[float, float]]:
    """job id -> (started, ended) of each run the `span` job logged."""
    found = {}
    if path.exists():
        for line in path.read_text().splitlines():
            started, ended, job_id, _attempt = line.split()
            found[int(job_id)] = (float(started), float(ended))
    return found


def assert_one_at_a_time(runs: list[tuple[float, float]]) -> None:
    runs = sorted(runs)
    for (_, ended), (started, _) in zip(runs, runs[1:]):
        assert started >= ended, f"two runs of one key overlapped: {runs}"


def supervisors_for(storage) -> int:
    return 2 if storage["url"].startswith("postgresql") else 1


def test_runs_with_one_overlap_key_never_overlap(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, pools={"default": {"workers": 3}}, storage=storage)
    log = tmp_path / "spans.log"
    with connect(config=str(config)) as q:
        by_event = {17: [], 18: []}
        for n in range(16):
            event = 17 if n % 2 else 18
            by_event[event].append(q.enqueue("jobs.examples:process_event_data", event, str(log),
                                             pause=0.02))
        plain = q.enqueue_many([("jobs.examples:span", (str(log), 0.02))] * 6)
        for _ in range(supervisors_for(storage)):
            start_supervisor(config)
        every = plain + by_event[17] + by_event[18]
        wait_for(lambda: all(q.status(i).state in END_STATES for i in every), 90,
                 "every job to end")
        assert {q.status(i).state for i in every} == {"succeeded"}
        assert all(q.status(i).attempts == 1 for i in every)  # waiting used no attempt
        assert q.status(by_event[17][0]).overlap_key == "event-17"
    runs = spans(log)
    for event, ids in by_event.items():
        assert_one_at_a_time([runs[i] for i in ids])


def test_a_worker_killed_while_it_holds_the_key_frees_it(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, storage=storage)
    pid_file, release = tmp_path / "holder.pid", tmp_path / "release"
    with connect(config=str(config)) as q:
        holder = q.enqueue("jobs.examples:hold_key", str(pid_file), str(release))
        behind = q.enqueue("jobs.examples:hold_key", str(tmp_path / "second.pid"), str(release))
        start_supervisor(config)
        wait_for(pid_file.exists, what="the first job to hold the key")
        assert q.status(behind).state == "pending"
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        wait_for(lambda: q.status(behind).state == "running", what="the next job to get the key")
        first = q.status(holder)
        assert first.state == "failed" and "killed by SIGKILL" in first.error
        release.touch()
        wait_for(lambda: q.status(behind).state == "succeeded", what="the second job to end")


def test_a_rate_limit_holds_across_supervisors_without_using_attempts(tmp_path, start_supervisor,
                                                                       storage):
    config = write_config(tmp_path, pools={"default": {"workers": 3}}, storage=storage,
                          rate_limits={"api-calls": "5/s"})
    log = tmp_path / "calls.log"
    with connect(config=str(config)) as q:
        limited = q.enqueue_many([("jobs.examples:call_api", (str(log),))] * 16)
        split = q.enqueue_many([("jobs.examples:call_api", (str(log),), {}, {"_rate_key": "user-2"})] * 3)
        plain = q.enqueue_many([("jobs.examples:append_line", (str(log), "plain"))] * 5)
        for _ in range(supervisors_for(storage)):
            start_supervisor(config)
        every = limited + split + plain
        wait_for(lambda: all(q.status(i).state in END_STATES for i in every), 90,
                 "every job to end")
        records = [q.status(i) for i in every]
    assert {r.state for r in records} == {"succeeded"}
    assert {r.attempts for r in records} == {1}
    starts = sorted(r.started_at for r in records[:len(limited)])
    # Any window of 1 s holds at most 5 starts: the 6th start after any start is 1 s later.
    assert all(later - first >= 1.0 for first, later in zip(starts, starts[5:])), starts
    assert records[len(limited)].rate_key == "limit:api-calls|user-2"
    # The other key and the plain jobs were not held up behind the limited ones.
    assert max(r.started_at for r in records[len(limited):]) < starts[-1]


def test_gate_options_are_checked_where_they_are_given(tmp_path):
    with pytest.raises(ValueError, match=r"^@job\(rate_limit=\.\.\.\): must be a rate such as"):
        job(rate_limit="5 per second")(lambda: None)
    with pytest.raises(ValueError, match=r"^@job\(without_overlapping=\.\.\.\): must be True"):
        job(without_overlapping="")(lambda: None)
    with connect("memory://") as q:
        with pytest.raises(PayloadError, match="_rate_key needs a rate limit"):
            q.enqueue("jobs.examples:add", 1, 2, _rate_key="u1")
        with pytest.raises(PayloadError, match="rate limit 'api-calls' names no limiter"):
            q.enqueue("jobs.examples:call_api", "x")
        with pytest.raises(PayloadError, match="its without_overlapping key function raised "
                                               "TypeError"):
            q.enqueue("jobs.examples:process_event_data")  # no event id to make the key of
        with pytest.raises(PayloadError, match='_overlap_key must be True, False or a non-empty'):
            q.enqueue("jobs.examples:add", 1, 2, _overlap_key="")
    config = write_config(tmp_path, rate_limits={"api-calls": "5 a second"})
    status, _, err = jobrt("status", "--config", config)
    assert status == 2 and "rate_limits.api-calls: must be a rate such as" in err
