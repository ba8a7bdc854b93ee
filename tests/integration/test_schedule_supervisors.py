"""Schedules end to end with real `jobrt start` supervisors: 2 on SQLite and 3 on PostgreSQL
record each tick of an `every = 1` schedule exactly once, even when one is SIGKILLed
mid-run; a downtime under each catch_up mode; a schedule added by SIGHUP starts ticking.
The tick rows are read straight from the database."""

from __future__ import annotations

import signal
import sqlite3
import time

import orjson
import pytest
import tomli_w

from tests.conftest import wait_for, write_config

SCHEDULE = {"job": "jobs.examples:noop", "every": 1}


def query(config, storage, sql: str) -> list[tuple]:
    """Rows of `sql` on the test's database ({p}: the tables' prefix); [] before it exists."""
    if storage["url"].startswith("sqlite"):
        conn = sqlite3.connect(config.parent / "jobs.db", timeout=10)
        try:
            return conn.execute(sql.format(p="")).fetchall()
        except sqlite3.OperationalError:  # no table yet: no supervisor opened the file
            return []
        finally:
            conn.close()
    import psycopg
    with psycopg.connect(storage["url"]) as conn:
        return conn.execute(sql.format(p="jobrt_")).fetchall()


def tick_rows(config, storage) -> list[tuple]:
    """(schedule, tick_at, outcome, job_id, missed, the job's scheduled_at) of every tick."""
    rows = query(config, storage, "SELECT t.schedule, t.tick_at, t.outcome, t.job_id, t.missed, "
                 "j.options FROM {p}schedule_ticks AS t LEFT JOIN {p}jobs AS j ON j.id = t.job_id "
                 "ORDER BY t.schedule, t.tick_at")
    return [(s, at, outcome, job_id, missed, orjson.loads(options)["scheduled_at"] if options else None)
            for s, at, outcome, job_id, missed, options in rows]


def assert_each_tick_once(rows, since: float, until: float) -> None:
    ticks = [row[1] for row in rows if since <= row[1] <= until]
    assert ticks == [float(t) for t in range(int(since), int(until) + 1)], \
        f"ticks lost or doubled between {since} and {until}: {ticks}"
    for _, at, outcome, job_id, missed, scheduled_at in rows:
        assert (outcome, missed, scheduled_at) == ("enqueued", 0, at)
    assert len({row[3] for row in rows}) == len(rows)  # a job each


def test_a_job_learns_its_tick_time(tmp_path, start_supervisor):
    storage = {"url": "sqlite:///jobs.db"}
    config = write_config(tmp_path, storage=storage,
                          schedules={"beat": {"job": "jobs.examples:tick_time", "every": 1}})
    supervisor = start_supervisor(config)
    done = wait_for(lambda: query(config, storage, "SELECT t.tick_at, j.result FROM schedule_ticks "
                                  "AS t JOIN jobs AS j ON j.id = t.job_id WHERE j.state = 'succeeded'"),
                    30, "a tick's job to succeed")
    assert supervisor.stop() == 0
    assert all(orjson.loads(result) == tick_at for tick_at, result in done)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_supervisors_record_each_tick_once_even_when_one_is_killed(tmp_path, start_supervisor,
                                                                    request, backend):
    storage = {"url": "sqlite:///jobs.db"} if backend == "sqlite" else \
        {"url": request.getfixturevalue("pg_url")}
    config = write_config(tmp_path, storage=storage,
                          schedules={"beat": {**SCHEDULE, "catch_up": "all"}})
    supervisors = [start_supervisor(config) for _ in range(2 if backend == "sqlite" else 3)]
    started = time.time()
    rows = wait_for(lambda: (r := tick_rows(config, storage)) and r[-1][1] >= started + 6 and r,
                    30, "6 s of ticks")
    supervisors[0].proc.kill()  # SIGKILL, mid-run: maybe inside a tick's transaction
    supervisors[0].proc.wait()
    killed_at = time.time()
    rows = wait_for(lambda: (r := tick_rows(config, storage)) and r[-1][1] >= killed_at + 6 and r,
                    30, "6 s of ticks after the kill")
    for supervisor in supervisors[1:]:
        assert supervisor.stop() == 0
    rows = tick_rows(config, storage)
    assert_each_tick_once(rows, rows[0][1], rows[-1][1])
    assert query(config, storage, "SELECT count(*) FROM {p}jobs") == [(len(rows),)]  # no other job


@pytest.mark.slow
def test_a_downtime_under_each_catch_up_mode(tmp_path, start_supervisor):
    storage = {"url": "sqlite:///jobs.db"}
    config = write_config(tmp_path, storage=storage, schedules={
        mode: {**SCHEDULE, "catch_up": mode} for mode in ("latest", "all", "none")})
    supervisor = start_supervisor(config)
    wait_for(lambda: len(tick_rows(config, storage)) >= 6, 30, "two ticks of each schedule")
    assert supervisor.stop() == 0
    last = {mode: max(r[1] for r in tick_rows(config, storage) if r[0] == mode)
            for mode in ("latest", "all", "none")}
    down = max(last.values())
    wait_for(lambda: time.time() >= down + 6, 10, "six ticks of downtime")
    restarted = start_supervisor(config)
    back = time.time()
    wait_for(lambda: all(r[1] >= back + 2 for r in _newest(tick_rows(config, storage))), 30,
             "two ticks after the restart")
    assert restarted.stop() == 0
    rows = tick_rows(config, storage)
    after = {mode: [r for r in rows if r[0] == mode and r[1] > last[mode]] for mode in last}
    # all: every tick of the downtime ran, one job each
    assert_each_tick_once(after["all"], last["all"] + 1, after["all"][-1][1])
    # latest: one run stood for the missed ticks, then the ticks on time
    first, *rest = after["latest"]
    assert first[2] == "enqueued" and first[4] == first[1] - last["latest"] - 1 >= 4
    assert_each_tick_once(rest, first[1] + 1, rest[-1][1])
    # none: the missed ticks are one row without a job, then the ticks on time
    first, *rest = after["none"]
    assert (first[2], first[3]) == ("missed", None) and first[4] == first[1] - last["none"] >= 4
    assert_each_tick_once(rest, first[1] + 1, rest[-1][1])


def _newest(rows) -> list[tuple]:
    newest = {}
    for row in rows:
        newest[row[0]] = row
    return list(newest.values()) if len(newest) == 3 else [(None, 0.0)]


def test_a_schedule_added_by_sighup_starts_ticking(tmp_path, start_supervisor):
    storage = {"url": "sqlite:///jobs.db"}
    config = write_config(tmp_path, storage=storage, schedules={"first": SCHEDULE})
    supervisor = start_supervisor(config)
    wait_for(lambda: tick_rows(config, storage), 30, "a tick of the first schedule")
    document = _toml(config)
    document["schedules"]["second"] = {"job": "jobs.examples:noop", "cron": "* * * * *"}
    document["schedules"]["third"] = SCHEDULE
    config.write_text(tomli_w.dumps(document))
    supervisor.signal(signal.SIGHUP)
    wait_for(lambda: any(r[0] == "third" for r in tick_rows(config, storage)), 30,
             "a tick of the schedule the reload added")
    document["schedules"]["third"] = {"job": "jobs.examples:nope", "every": 1}
    config.write_text(tomli_w.dumps(document))
    supervisor.signal(signal.SIGHUP)
    wait_for(lambda: "schedules.third.job" in supervisor.output(), 30, "the reload's rejection")
    assert supervisor.stop() == 0
    assert "new configuration rejected" in supervisor.output()


def _toml(config):
    import tomllib
    return tomllib.loads(config.read_text())
