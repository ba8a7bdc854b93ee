"""`jobrt schedule list [--json]` and `jobrt schedule run NAME` as a user runs them, and a bad
schedule as `jobrt start` reports it (one line naming file, schedule and key, exit 2)."""

from __future__ import annotations

import json
import time

import orjson
import pytest

from runtime.storage import NewJob, open_storage
from runtime.storage.ticks import NewTick
from tests.conftest import jobrt, write_config

SCHEDULES = {
    "beat": {"job": "jobs.examples:add", "every": 60, "args": [1, 2], "queue": "low",
             "overlap": "skip"},
    "nightly": {"job": "jobs.examples:noop", "cron": "@daily", "timezone": "Europe/Berlin",
                "catch_up": "none"},
}


def test_schedule_list_and_run(tmp_path):
    config = write_config(tmp_path, schedules=SCHEDULES)
    code, out, err = jobrt("schedule", "run", "beat", "--config", config, "--json")
    assert code == 0, err
    ran = json.loads(out)
    assert ran["schedule"] == "beat"
    code, out, _ = jobrt("job", str(ran["id"]), "--config", config, "--json")
    record = json.loads(out)
    assert (record["name"], record["queue"], record["args"]) == ("jobs.examples:add", "low", [1, 2])
    assert record["options"]["scheduled_at"] == ran["scheduled_at"]
    # a tick recorded as a supervisor records it, with its job
    store = open_storage("sqlite:///jobs.db", role="client", base_dir=str(tmp_path))
    job = NewJob("low", "jobs.examples:add", orjson.dumps([[1, 2], {}]), 0.0,
                 options=orjson.dumps({"scheduled_at": 1200.0}))
    (tick,) = store.enqueue_ticks([NewTick("beat", 1200.0, job, True, 3)], 1201.0)
    store.close()
    before = time.time()
    code, out, err = jobrt("schedule", "list", "--config", config, "--json")
    assert code == 0, err
    beat, nightly = json.loads(out)
    assert (beat["name"], beat["expression"], beat["every"], beat["overlap"]) == (
        "beat", "every 60 s", 60, "skip")
    assert beat["last_tick"] == {"schedule": "beat", "tick_at": 1200.0, "outcome": "enqueued",
                                 "job_id": tick.job_id, "job_state": "pending", "missed": 3,
                                 "created_at": 1201.0}
    assert before < beat["next_run"] <= before + 61 and beat["next_run"] % 60 == 0
    assert (nightly["expression"], nightly["cron"], nightly["last_tick"]) == (
        "@daily Europe/Berlin", "0 0 * * *", None)
    code, out, err = jobrt("schedule", "list", "--config", config)
    assert code == 0 and "beat" in out and f"as job {tick.job_id} (pending)" in out
    assert "nightly" in out and "no tick yet" in out


def test_schedule_run_of_an_unknown_schedule_is_a_usage_error(tmp_path):
    config = write_config(tmp_path, schedules=SCHEDULES)
    code, out, err = jobrt("schedule", "run", "weekly", "--config", config, "--json")
    assert code == 2 and "no schedule 'weekly'" in err and "beat, nightly" in err
    assert json.loads(out)["exit"] == 2


def test_a_bad_schedule_is_one_config_error(tmp_path):
    for table, key in (({"job": "jobs.examples:noop", "cron": "*/5 * * *"}, "cron"),
                       ({"job": "jobs.examples:noop", "every": 5, "queue": "nowhere"}, "queue"),
                       ({"job": "jobs.examples:missing", "every": 5}, "job"),
                       ({"job": "jobs.examples:noop", "cron": "0 3 * * *",
                         "timezone": "Berlin"}, "timezone")):
        config = write_config(tmp_path, schedules={"broken": table})
        code, out, err = jobrt("start", "--config", config)
        assert code == 2, err
        assert err.startswith(f"jobrt: {config}: schedules.broken.{key}: "), err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        if key == "queue":  # the fix named is the schedule's own key, not enqueue's _queue=
            assert "set this schedule's queue to one a pool serves" in err and "_queue" not in err


@pytest.mark.parametrize("words", [["list"], ["run", "beat"], ["run", ""], ["run", "a b\nc"],
                                   ["run", "\udcff"], ["run"], ["list", "extra"], []])
@pytest.mark.parametrize("which", ["good", "none", "missing", "broken", "memory", "bad"])
@pytest.mark.parametrize("take_json", [True, False])
def test_any_schedule_command_line_gets_a_documented_answer(tmp_path, capsys, words, which,
                                                            take_json):
    """As tests/acceptance/test_cli_fuzz.py holds every other command: exit 0, 1 or 2, no
    traceback, one JSON document with --json, one line on stderr for an error."""
    from runtime.cli import main
    from tests.acceptance.test_cli_fuzz import check_answer

    storage = {"missing": {"url": "sqlite:///no/such/dir/x.db"}, "memory": {"url": "memory://"}}
    schedules = {"none": {}, "bad": {"beat": {"job": "jobs.examples:noop", "cron": "x"}}}
    config = write_config(tmp_path, storage=storage.get(which),
                          schedules=schedules.get(which, SCHEDULES))
    if which == "broken":
        config.write_text("[schedules.beat\n")
    argv = ["schedule", *words, "--config", str(config)] + (["--json"] if take_json else [])
    capsys.readouterr()
    code = main.main(argv)
    out, err = capsys.readouterr()
    check_answer(argv, take_json, code, out, err)
