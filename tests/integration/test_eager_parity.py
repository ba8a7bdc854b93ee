"""The eager queue against a real supervisor: one workflow (a batch with a failing member, a
retried member and all three callbacks; a chain whose step fails, with catch; a chain that
succeeds and passes results on) run by `jobrt start` and by runtime.testing.eager_queue, from
the same code and config, ends the same way: every job's state, attempts, result and error,
the batch's counts, the chains' states, which callbacks ran and with what counts (catch's: those not raced)."""

from __future__ import annotations

import orjson
import pytest

from runtime import connect
from runtime.testing import eager_queue
from tests.conftest import REPO, wait_for, write_config

JOBS = {"modules": ["jobs.examples", "jobs.batch_examples", "jobs.chain_examples"], "path": [str(REPO)]}
CALLBACKS = dict(then="jobs.batch_examples:then_note", catch="jobs.batch_examples:catch_note",
                 finally_="jobs.batch_examples:finally_note")
STEP, FAILING_STEP = "jobs.chain_examples:step", "jobs.chain_examples:failing_step"


def workflow(config, directory) -> dict:
    """Code under test: enqueues as an application would; returns what it made."""
    with connect(config=str(config)) as q:
        batch = q.batch([("jobs.batch_examples:member", (1,)),
                         ("jobs.batch_examples:failing_member", ("member 2 failed",)),
                         ("jobs.examples:flaky", (2,)), ("jobs.batch_examples:member", ("four",))],
                        name=str(directory), allow_failures=True, **CALLBACKS)
        failing = q.chain([(STEP, (str(directory), 0)), (FAILING_STEP, (str(directory), 1)),
                           (STEP, (str(directory), 2))], catch="jobs.chain_examples:catch_note")
        passing = q.chain([(STEP, (str(directory), 10)), ("jobs.examples:echo", ("last",))])
    return {"batch": batch.id, "members": batch.job_ids, "chains": [failing.id, passing.id]}


def outcome(q, made: dict, directory) -> dict:
    """What the workflow ended as, without ids and times."""
    def notes(name, under=directory):
        path = under / f"{name}.jsonl"
        records = [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []
        return [(r.get("total"), r.get("succeeded"), r.get("failed"), r.get("state"), len(r["jobs"]))
                if "jobs" in r else (r["total"], r["succeeded"], r["failed"], r["cancelled"]) for r in records]

    def job(job_id):
        record = q.status(job_id)
        return (record.name, record.state, record.attempts, record.result, record.error)

    batch = q.batch_status(made["batch"])
    chains = [q.chain_status(chain_id) for chain_id in made["chains"]]
    return {
        "batch": (batch.total, batch.pending, batch.running, batch.succeeded, batch.failed, batch.cancelled,
                  len(batch.failed_job_ids), batch.finished_at is not None),
        "members": [job(j) for j in made["members"]],
        "chains": [(c.state, c.steps, [job(j) for j in c.jobs]) for c in chains],
        # catch runs at the first failure: what else had ended by then is a race under a
        # supervisor (two workers), so only its total and failures are compared
        "then": notes("then"), "catch": [n[:1] + n[2:3] for n in notes("catch")],
        "finally": notes("finally"),
        "chain catch": notes("catch", directory / "chain"),
    }


def idle(q) -> bool:
    return all(c["pending"] == c["delayed"] == c["running"] == 0 for c in q.counts().values())


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path, pools={"default": {"workers": 2}}, jobs=JOBS)


def test_the_eager_queue_ends_a_workflow_as_a_supervisor_does(tmp_path, config, start_supervisor,
                                                              monkeypatch):
    real_dir, eager_dir = tmp_path / "real", tmp_path / "eager"
    for directory in (real_dir, eager_dir):
        (directory / "chain").mkdir(parents=True)  # the chain's catch notes: $CHAIN_NOTES

    start_supervisor(config, env={"CHAIN_NOTES": str(real_dir / "chain")})
    made = workflow(config, real_dir)
    with connect(config=str(config)) as q:
        wait_for(lambda: q.batch_status(made["batch"]).finished_at is not None and idle(q)
                 and all(q.chain_status(c).state != "running" for c in made["chains"]), 60,
                 "the workflow to end")
        real = outcome(q, made, real_dir)

    monkeypatch.setenv("CHAIN_NOTES", str(eager_dir / "chain"))
    with eager_queue(config=str(config)) as q:
        made = workflow(config, eager_dir)
        q.run_until_empty()
        eager = outcome(q, made, eager_dir)

    assert eager == real
    # and it is the workflow meant: a failure in each, callbacks once each
    assert real["batch"] == (4, 0, 0, 3, 1, 0, 1, True)
    assert [c[0] for c in real["chains"]] == ["failed", "succeeded"]
    assert len(real["then"]) == 0 and len(real["catch"]) == len(real["finally"]) == 1
    assert len(real["chain catch"]) == 1
    assert real["chains"][1][2][1][3] == {"args": ["last"], "kwargs": {}}
