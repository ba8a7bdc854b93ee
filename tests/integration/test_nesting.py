"""Nested workflows with `jobrt start`, on SQLite and PostgreSQL: a batch as a chain's step
(the chain goes on after its last member, or stops at its failure), a chain as a batch's
member (the batch ends after its last step), and what a job learns of its workflow:
current_batch() and previous_result().

Jobs (jobs.chain_examples:context_note) append their label, batch record and previous
result to <tmp>/context.jsonl; batch callbacks (jobs.batch_examples) append the record they
got to <batch name>/<callback>.jsonl, each batch named after a directory of its own."""

from __future__ import annotations

import orjson
import pytest

from runtime import Batch, Chain, PayloadError, connect
from tests.conftest import REPO, jobrt, wait_for, write_config

JOBS = {"modules": ["jobs.examples", "jobs.batch_examples", "jobs.chain_examples"],
        "path": [str(REPO)]}
NOTE, FAILING = "jobs.chain_examples:context_note", "jobs.batch_examples:failing_member"
THEN, CATCH, FINALLY = ("jobs.batch_examples:then_note", "jobs.batch_examples:catch_note",
                        "jobs.batch_examples:finally_note")
CHAIN_CATCH = "jobs.chain_examples:catch_note"


def lines(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def idle(q) -> bool:
    return all(c["pending"] == c["delayed"] == c["running"] == 0 for c in q.counts().values())


def start(tmp_path, storage, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"workers": 2}}, storage=storage, jobs=JOBS)
    start_supervisor(config, env={"CHAIN_NOTES": str(tmp_path)})
    return config


def by_label(tmp_path) -> dict:
    return {note["label"]: note for note in lines(tmp_path / "context.jsonl")}


def test_a_batch_step_runs_between_its_neighbours(tmp_path, start_supervisor, storage):
    config = start(tmp_path, storage, start_supervisor)
    inner = tmp_path / "inner"
    inner.mkdir()
    with connect(config=str(config)) as q:
        c = q.chain([(NOTE, (str(tmp_path), "a")),
                     Batch([(NOTE, (str(tmp_path), f"m{n}")) for n in range(3)], name=str(inner),
                           then=THEN, finally_=FINALLY),
                     (NOTE, (str(tmp_path), "c"))], catch=CHAIN_CATCH)
        wait_for(lambda: q.chain_status(c.id).state != "running", 60, "the chain to end")
        wait_for(lambda: idle(q), 60, "every job to end")
        record = q.chain_status(c.id)
    assert record.state == "succeeded" and record.steps[1] == {"batch": str(inner), "members": 3}
    batch_id = record.jobs[1]["batch"]
    notes = by_label(tmp_path)
    assert notes["a"]["previous"] is None and notes["a"]["batch"] is None
    members = [notes[f"m{n}"] for n in range(3)]
    assert all(m["batch"]["id"] == batch_id and m["batch"]["name"] == str(inner) for m in members)
    assert all(m["started"] >= notes["a"]["ended"] for m in members)
    assert notes["c"]["started"] >= max(m["ended"] for m in members)
    # after a batch step, the previous result is that batch's record, as it finished
    assert (notes["c"]["previous"]["id"], notes["c"]["previous"]["succeeded"]) == (batch_id, 3)
    assert len(lines(inner / "then.jsonl")) == len(lines(inner / "finally.jsonl")) == 1
    assert lines(tmp_path / "catch.jsonl") == []
    code, out, _ = jobrt("chain", "show", c.id, "--config", config, "--json")
    assert code == 0 and [s["state"] for s in orjson.loads(out)["step_states"]] == ["succeeded"] * 3
    assert orjson.loads(out)["step_states"][1] | {"name": None} == {
        "index": 1, "name": None, "job_id": None, "batch_id": batch_id, "state": "succeeded",
        "progress": 100}
    code, out, _ = jobrt("chain", "show", c.id, "--config", config)
    assert code == 0 and f"batch {inner} (3 members)" in out and "succeeded 100%" in out


def test_a_failed_batch_step_stops_its_chain(tmp_path, start_supervisor, storage):
    config = start(tmp_path, storage, start_supervisor)
    inner = tmp_path / "inner"
    inner.mkdir()
    with connect(config=str(config)) as q:
        c = q.chain([Batch([(FAILING, ("boom",)), (NOTE, (str(tmp_path), "m"))], name=str(inner),
                           catch=CATCH, finally_=FINALLY, allow_failures=True),
                     (NOTE, (str(tmp_path), "never"))], catch=CHAIN_CATCH)
        assert c.first_job_id is None  # its first step is a batch
        wait_for(lambda: lines(tmp_path / "catch.jsonl"), 60, "the chain's catch")
        wait_for(lambda: idle(q), 60, "every job to end")
        record = q.chain_status(c.id)
    assert record.state == "failed" and len(record.jobs) == 1
    assert "never" not in by_label(tmp_path) and "m" in by_label(tmp_path)
    [caught] = lines(tmp_path / "catch.jsonl")
    assert (caught["id"], caught["state"]) == (c.id, "failed")
    assert len(lines(inner / "catch.jsonl")) == len(lines(inner / "finally.jsonl")) == 1


def test_a_chain_member_passes_results_and_ends_its_batch(tmp_path, start_supervisor, storage):
    config = start(tmp_path, storage, start_supervisor)
    with connect(config=str(config)) as q:
        b = q.batch([(NOTE, (str(tmp_path), "x")),
                     Chain([(NOTE, (str(tmp_path), "p")), (NOTE, (str(tmp_path), "q"))],
                           catch=CHAIN_CATCH)],
                    name=str(tmp_path), then=THEN, finally_=FINALLY)
        wait_for(lambda: lines(tmp_path / "finally.jsonl"), 60, "the batch's finally")
        wait_for(lambda: idle(q), 60, "every job to end")
        status = q.batch_status(b.id)
        chain = q.chain_status(q.status(b.job_ids[1]).chain_id)
    notes = by_label(tmp_path)
    assert (status.total, status.succeeded, chain.state, chain.batch_id) == (3, 3, "succeeded", b.id)
    assert notes["q"]["previous"] == "p" and notes["p"]["previous"] is None
    assert all(notes[k]["batch"]["id"] == b.id for k in "xpq")
    [then] = lines(tmp_path / "then.jsonl")
    assert then["succeeded"] == 3 and len(lines(tmp_path / "finally.jsonl")) == 1


def test_nesting_goes_one_level_deep_and_says_so(tmp_path, storage):
    config = write_config(tmp_path, pools={"default": {"workers": 1}}, storage=storage, jobs=JOBS)
    step = (NOTE, (str(tmp_path), "s"))
    with connect(config=str(config)) as q:
        with pytest.raises(PayloadError, match="chain item 1: a batch inside a chain holds jobs only"):
            q.chain([step, Batch([step, Chain([step])])])
        with pytest.raises(PayloadError, match="batch item 0: a chain inside a batch holds jobs only"):
            q.batch([Chain([step, Batch([step])])])
        with pytest.raises(PayloadError, match="chain item 0: a chain in a chain"):
            q.chain([Chain([step])])
        with pytest.raises(PayloadError, match="batch item 1: a batch in a batch"):
            q.batch([step, Batch([step])])
        with pytest.raises(PayloadError, match="batch item 0: chain item 1 .* cannot be unique"):
            q.batch([Chain([step, (NOTE, (str(tmp_path), "u"), {}, {"_unique": True})])])
        assert all(sum(c.values()) == 0 for c in q.counts().values())  # nothing refused was stored
