"""Chains with `jobrt start`, on SQLite and PostgreSQL: steps run one after another, each
enqueued once the one before it succeeded; a step that fails for good stops the chain and
its catch runs once, with the chain's record; a cancelled step cancels the chain; the
chain's record and `jobrt chain show`; the API's refusals.

Steps (jobs.chain_examples) append when they started and ended to <tmp>/steps.jsonl; the
catch appends the record it got to $CHAIN_NOTES/catch.jsonl, CHAIN_NOTES being the test's
directory, given to the supervisor (and so to its workers) in its environment."""

from __future__ import annotations

import json

import orjson
import pytest

from runtime import ChainNotFound, PayloadError, UnknownJob, connect
from tests.conftest import REPO, jobrt, wait_for, write_config

JOBS = {"modules": ["jobs.examples", "jobs.chain_examples"], "path": [str(REPO)]}
STEP, FAILING, WAITING = ("jobs.chain_examples:step", "jobs.chain_examples:failing_step",
                          "jobs.chain_examples:waiting_step")
CATCH = "jobs.chain_examples:catch_note"


def lines(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def idle(q) -> bool:
    """No job waits or runs in any queue (the catch's job included)."""
    return all(c["pending"] == c["delayed"] == c["running"] == 0 for c in q.counts().values())


def ended(q, chain_id: int) -> str:
    """Waits for the chain to end and every job to end; the chain's state."""
    wait_for(lambda: q.chain_status(chain_id).state != "running", 60, f"chain {chain_id} to end")
    wait_for(lambda: idle(q), 60, "every job to end")
    return q.chain_status(chain_id).state


def config_for(tmp_path, storage):
    return write_config(tmp_path, pools={"default": {"workers": 2}}, storage=storage, jobs=JOBS)


def start(tmp_path, storage, start_supervisor):
    config = config_for(tmp_path, storage)
    start_supervisor(config, env={"CHAIN_NOTES": str(tmp_path)})
    return config


def test_steps_run_one_after_another(tmp_path, start_supervisor, storage):
    config = start(tmp_path, storage, start_supervisor)
    with connect(config=str(config)) as q:
        c = q.chain([(STEP, (str(tmp_path), n)) for n in range(3)], catch=CATCH)
        assert q.status(c.first_job_id).state in ("pending", "running", "succeeded")
        assert ended(q, c.id) == "succeeded"
        record = q.chain_status(c.id)
        jobs = [q.status(i) for i in record.jobs]
    assert record.jobs[0] == c.first_job_id and len(record.jobs) == 3
    assert record.steps == [STEP] * 3 and record.catch == CATCH and record.queue == "default"
    assert record.finished_at is not None and record.finished_at >= record.created_at
    assert [job.state for job in jobs] == ["succeeded"] * 3
    assert [job.result for job in jobs] == [0, 1, 2]
    notes = lines(tmp_path / "steps.jsonl")
    assert [(n["index"], n["job_id"]) for n in notes] == list(enumerate(record.jobs))
    for before, after in zip(notes, notes[1:]):
        assert after["started"] >= before["ended"], (before, after)
    # Storage's own times say the same: a step is made only once the one before it ended.
    for before, after in zip(jobs, jobs[1:]):
        assert after.created_at >= before.finished_at and after.started_at >= before.finished_at
    assert lines(tmp_path / "catch.jsonl") == []


def test_a_failing_step_stops_the_chain_and_catch_runs_once(tmp_path, start_supervisor, storage):
    config = start(tmp_path, storage, start_supervisor)
    directory = str(tmp_path)
    with connect(config=str(config)) as q:
        c = q.chain([(STEP, (directory, 0)), (FAILING, (directory, 1)), (STEP, (directory, 2)),
                     (STEP, (directory, 3))], catch=CATCH)
        assert ended(q, c.id) == "failed"
        record = q.chain_status(c.id)
        states = [q.status(i).state for i in record.jobs]
    assert len(record.jobs) == 2 and states == ["succeeded", "failed"]
    assert [n["index"] for n in lines(tmp_path / "steps.jsonl")] == [0, 1]  # 2 and 3 never ran
    [caught] = lines(tmp_path / "catch.jsonl")  # every job ended: it ran once, and only once
    assert (caught["id"], caught["state"], caught["jobs"]) == (c.id, "failed", record.jobs)
    assert caught["steps"] == [STEP, FAILING, STEP, STEP] and caught["catch"] == CATCH
    assert record.finished_at is not None


def test_a_cancelled_step_cancels_the_chain(tmp_path, start_supervisor, storage):
    config = start(tmp_path, storage, start_supervisor)
    directory, release = str(tmp_path), tmp_path / "release"
    with connect(config=str(config)) as q:
        running = q.chain([(WAITING, (directory, 0, str(release))), (STEP, (directory, 1))],
                          catch=CATCH)
        later = q.chain([(STEP, (directory, 10), {}, {"_delay": 3600}), (STEP, (directory, 11))],
                        catch=CATCH)
        # A pending (delayed) step: the chain is cancelled with it, at once.
        assert q.cancel(later.first_job_id) == "pending"
        assert q.chain_status(later.id).state == "cancelled"
        # A running step: its supervisor kills it, and the chain ends with it.
        wait_for(lambda: q.status(running.first_job_id).state == "running", 60, "the first step to run")
        assert q.cancel(running.first_job_id) == "running"
        assert ended(q, running.id) == "cancelled"
        records = [q.chain_status(running.id), q.chain_status(later.id)]
        assert q.status(running.first_job_id).state == "cancelled"
    release.touch()
    for record in records:
        assert len(record.jobs) == 1 and record.finished_at is not None
    assert lines(tmp_path / "steps.jsonl") == []  # the later steps never ran
    assert lines(tmp_path / "catch.jsonl") == []  # a cancel is no failure


def test_the_chain_command(tmp_path, start_supervisor, storage):
    config = start(tmp_path, storage, start_supervisor)
    directory = str(tmp_path)
    with connect(config=str(config)) as q:
        done = q.chain([(STEP, (directory, 0)), (FAILING, (directory, 1)), (STEP, (directory, 2))],
                       catch=CATCH)
        ended(q, done.id)
        held = q.chain([(STEP, (directory, 5), {}, {"_delay": 3600}), (STEP, (directory, 6))])
        jobs = q.chain_status(done.id).jobs
    code, out, err = jobrt("chain", "show", done.id, "--config", config)
    assert code == 0 and err == ""
    for text in ("state: failed", f"catch: {CATCH}", "steps: 3", f"0: {STEP}",
                 f"job {jobs[0]}", "succeeded", f"1: {FAILING}", f"job {jobs[1]}", "finished_at: 20"):
        assert text in out, (text, out)
    assert out.splitlines()[-1].split() == ["2:", STEP, "job", "-", "never"]
    code, out, _ = jobrt("chain", "show", held.id, "--config", config)
    assert code == 0 and "state: running" in out and "catch: -" in out
    assert out.splitlines()[-2].split() == ["0:", STEP, "job", str(held.first_job_id), "pending"]
    assert out.splitlines()[-1].split() == ["1:", STEP, "job", "-", "waiting"]
    code, out, _ = jobrt("chain", "show", done.id, "--config", config, "--json")
    document = json.loads(out)
    assert code == 0 and (document["id"], document["state"], document["jobs"]) == (done.id, "failed", jobs)
    assert document["step_states"] == [
        {"index": 0, "name": STEP, "job_id": jobs[0], "state": "succeeded"},
        {"index": 1, "name": FAILING, "job_id": jobs[1], "state": "failed"},
        {"index": 2, "name": STEP, "job_id": None, "state": "never"}]
    code, out, err = jobrt("chain", "show", 999, "--config", config)
    assert (code, out) == (1, "") and err.count("\n") == 1 and "no chain with id 999" in err
    code, out, _ = jobrt("chain", "show", 999, "--config", config, "--json")
    assert code == 1 and json.loads(out)["exit"] == 1
    code, _, err = jobrt("chain", "show", "x", "--config", config)
    assert code == 2 and "must be a chain id" in err


def test_chain_errors_are_clear(tmp_path, storage):
    config = config_for(tmp_path, storage)
    step = (STEP, (str(tmp_path), 0))
    with connect(config=str(config)) as q:
        with pytest.raises(ChainNotFound, match="no chain with id 12345"):
            q.chain_status(12345)
        with pytest.raises(PayloadError, match="a chain needs at least one step"):
            q.chain([])
        with pytest.raises(PayloadError, match="chain item 1 .* cannot be unique"):
            q.chain([step, (STEP, (str(tmp_path), 1), {}, {"_unique": True})])
        with pytest.raises(PayloadError, match="chain item 0 .* cannot be unique"):
            q.chain([(STEP, (str(tmp_path), 1), {}, {"_unique": "order-42"})])
        with pytest.raises(UnknownJob, match="jobs.chain_examples:nope"):
            q.chain([step], catch="jobs.chain_examples:nope")
        with pytest.raises(PayloadError, match="cannot take it"):
            q.chain([step], catch="jobs.examples:noop")  # takes no argument
        with pytest.raises(PayloadError, match="served by no pool"):
            q.chain([step], catch=CATCH, queue="nowhere")
        with pytest.raises(PayloadError, match="chain item 1"):
            q.chain([step, "not an item"])
        assert all(sum(c.values()) == 0 for c in q.counts().values())  # nothing refused was stored
        c = q.chain([step, (STEP, (str(tmp_path), 1), {}, {"_unique": False})])  # no key: fine
        assert q.chain_status(c.id).jobs == [c.first_job_id]


def test_a_steps_delay_counts_from_when_it_is_enqueued(tmp_path, start_supervisor, storage):
    config = start(tmp_path, storage, start_supervisor)
    with connect(config=str(config)) as q:
        c = q.chain([(STEP, (str(tmp_path), 0)), (STEP, (str(tmp_path), 1), {}, {"_delay": 3600})])
        wait_for(lambda: len(q.chain_status(c.id).jobs) == 2, 60, "the second step")
        first, second = (q.status(i) for i in q.chain_status(c.id).jobs)
        assert q.chain_status(c.id).state == "running"
        assert second.state == "pending"
    assert second.available_at >= first.finished_at + 3600
    assert second.available_at - second.created_at == pytest.approx(3600, abs=1)
