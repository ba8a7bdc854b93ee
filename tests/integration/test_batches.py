"""Batches with `jobrt start`, on SQLite and PostgreSQL: then, catch and finally each run
once, in a worker, with the batch's record; the first failure cancels the pending members
unless failures are allowed; members added from a member; cancel; retry of the failed
members; an empty batch; the `jobrt batch` verbs. Then the race: two supervisors on one
PostgreSQL database settle the two members of each batch at the same instant, and every
batch's then and finally still run exactly once, with exact counts.

Callbacks (jobs.batch_examples) append the record they got to <batch name>/<callback>.jsonl:
each batch here is named after a directory of its own."""

from __future__ import annotations

import json
import os

import orjson
import pytest

from runtime import BatchFinished, BatchNotFound, connect
from tests.conftest import REPO, jobrt, wait_for, write_config

JOBS = {"modules": ["jobs.examples", "jobs.batch_examples"], "path": [str(REPO)]}
CALLBACKS = dict(then="jobs.batch_examples:then_note", catch="jobs.batch_examples:catch_note",
                 finally_="jobs.batch_examples:finally_note")
MEMBER, FAILING = "jobs.batch_examples:member", "jobs.batch_examples:failing_member"
RACE_BATCHES = int(os.environ.get("JOBRT_RACE_BATCHES", "0")) or None  # see test_the_race


def notes(directory, callback: str) -> list[dict]:
    path = directory / f"{callback}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def idle(q) -> bool:
    """No job waits or runs in any queue (the callbacks' jobs included)."""
    return all(c["pending"] == c["delayed"] == c["running"] == 0 for c in q.counts().values())


def finished(q, batch_id: int, directory) -> None:
    """Waits for the batch's finally callback to have run and every job to have ended."""
    wait_for(lambda: notes(directory, "finally"), 60, "the finally callback")
    wait_for(lambda: idle(q), 60, "every job to end")


def config_for(tmp_path, storage, **pool):
    return write_config(tmp_path, pools={"default": {"workers": 2, **pool}}, storage=storage, jobs=JOBS)


def test_then_and_finally_run_once_with_the_record(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    with connect(config=str(config)) as q:
        b = q.batch([(MEMBER, (n,)) for n in range(5)], name=str(tmp_path), **CALLBACKS)
        finished(q, b.id, tmp_path)
        assert [q.status(i).state for i in b.job_ids] == ["succeeded"] * 5
        assert all(q.status(i).batch_id == str(b.id) for i in b.job_ids)
        status = q.batch_status(b.id)
    [then], [last] = notes(tmp_path, "then"), notes(tmp_path, "finally")
    assert notes(tmp_path, "catch") == []
    for record in (then, last):
        assert (record["id"], record["total"], record["succeeded"], record["failed"]) == (b.id, 5, 5, 0)
        assert (record["pending"], record["running"], record["progress"]) == (0, 0, 100)
        assert record["finished_at"] is not None and record["then"] == CALLBACKS["then"]
    assert (status.succeeded, status.progress, status.finished_at) == (5, 100, last["finished_at"])


def test_the_first_failure_cancels_the_pending_members(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    with connect(config=str(config)) as q:
        later = {"_delay": 3600}  # pending (not yet due) when the failure comes
        b = q.batch([(FAILING, ("boom",)), (MEMBER, (1,), {}, later), (MEMBER, (2,), {}, later)],
                    name=str(tmp_path), **CALLBACKS)
        finished(q, b.id, tmp_path)
        status = q.batch_status(b.id)
        assert [q.status(i).state for i in b.job_ids] == ["failed", "cancelled", "cancelled"]
    [caught], [last] = notes(tmp_path, "catch"), notes(tmp_path, "finally")
    assert notes(tmp_path, "then") == []
    assert (caught["failed"], caught["failed_job_ids"]) == (1, [b.job_ids[0]])
    assert (last["failed"], last["cancelled"], last["succeeded"]) == (1, 2, 0)
    assert (status.failed, status.cancelled, status.failed_job_ids) == (1, 2, [b.job_ids[0]])
    assert status.cancelled_at is not None and status.finished_at is not None


def test_allowed_failures_leave_the_other_members_running(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    with connect(config=str(config)) as q:
        b = q.batch([(FAILING, ()), (MEMBER, (1,)), (MEMBER, (2,))], name=str(tmp_path),
                    allow_failures=True, **CALLBACKS)
        finished(q, b.id, tmp_path)
    assert len(notes(tmp_path, "catch")) == 1 and notes(tmp_path, "then") == []
    [last] = notes(tmp_path, "finally")
    assert (last["succeeded"], last["failed"], last["cancelled"]) == (2, 1, 0)
    assert last["cancelled_at"] is None


def test_a_member_adds_members_to_its_own_batch(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    with connect(config=str(config)) as q:
        b = q.batch([("jobs.batch_examples:adds_to_batch", (str(config), "late"))],
                    name=str(tmp_path), **CALLBACKS)
        finished(q, b.id, tmp_path)
        added = q.status(b.job_ids[0]).result
        assert (q.status(added).result, q.status(added).batch_id) == ("late", str(b.id))
        with pytest.raises(BatchFinished, match=f"batch {b.id} has finished"):
            q.batch_add(b.id, [(MEMBER, ())])
    [then] = notes(tmp_path, "then")
    assert (then["total"], then["succeeded"]) == (2, 2)


def test_cancel_a_batch(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    release = tmp_path / "release"
    with connect(config=str(config)) as q:
        b = q.batch([("jobs.batch_examples:waits_for", (str(release),)),
                     (MEMBER, (), {}, {"_delay": 3600}), (MEMBER, (), {}, {"_delay": 3600})],
                    name=str(tmp_path), **CALLBACKS)
        wait_for(lambda: q.batch_status(b.id).running == 1, 60, "the first member to run")
        assert q.batch_cancel(b.id) is True
        status = q.batch_status(b.id)
        # The running member finishes; the batch finishes with it.
        assert (status.cancelled, status.running, status.finished_at) == (2, 1, None)
        assert notes(tmp_path, "finally") == []
        release.touch()
        finished(q, b.id, tmp_path)
        assert q.batch_cancel(b.id) is False
    [last] = notes(tmp_path, "finally")
    assert (last["succeeded"], last["cancelled"], last["failed"]) == (1, 2, 0)
    assert notes(tmp_path, "then") == notes(tmp_path, "catch") == []


def test_cancel_with_kill_stops_the_running_members(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    never = tmp_path / "never"  # nobody makes it: the running members would wait 30 s
    with connect(config=str(config)) as q:
        b = q.batch([("jobs.batch_examples:waits_for", (str(never),)) for _ in range(2)]
                    + [(MEMBER, (), {}, {"_delay": 3600})], name=str(tmp_path), **CALLBACKS)
        wait_for(lambda: q.batch_status(b.id).running == 2, 60, "both waiting members to run")
        code, out, _ = jobrt("batch", "cancel", b.id, "--kill", "--config", config)
        assert code == 0 and "running ones are killed" in out
        finished(q, b.id, tmp_path)
        assert [q.status(i).state for i in b.job_ids] == ["cancelled"] * 3
    [last] = notes(tmp_path, "finally")
    assert (last["succeeded"], last["cancelled"], last["failed"]) == (0, 3, 0)
    assert notes(tmp_path, "then") == notes(tmp_path, "catch") == []


def test_retry_runs_the_failed_members_again(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    fixed = tmp_path / "fixed"
    with connect(config=str(config)) as q:
        b = q.batch([("jobs.batch_examples:fails_until", (str(fixed),)), (MEMBER, ())],
                    name=str(tmp_path), allow_failures=True, **CALLBACKS)
        finished(q, b.id, tmp_path)
        assert q.batch_status(b.id).failed_job_ids == [b.job_ids[0]]
        fixed.touch()
        assert q.batch_retry(b.id) == 1
        wait_for(lambda: q.status(b.job_ids[0]).state == "succeeded", 60, "the retried member")
        wait_for(lambda: idle(q), 60, "every job to end")
        status = q.batch_status(b.id)
        assert q.batch_retry(b.id) == 0
    assert (status.succeeded, status.failed, status.failed_job_ids) == (2, 0, [])
    assert status.finished_at is not None
    # catch and finally ran before the retry and do not run again; then runs once, now
    # that every member succeeded.
    wait_for(lambda: notes(tmp_path, "then"), 60, "the then callback")
    assert [len(notes(tmp_path, c)) for c in ("then", "catch", "finally")] == [1, 1, 1]
    assert notes(tmp_path, "then")[0]["succeeded"] == 2


def test_an_empty_batch_runs_its_callbacks_at_once(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    with connect(config=str(config)) as q:
        b = q.batch([], name=str(tmp_path), **CALLBACKS)
        assert q.batch_status(b.id).finished_at is not None
        finished(q, b.id, tmp_path)
    [then], [last] = notes(tmp_path, "then"), notes(tmp_path, "finally")
    assert then["total"] == last["total"] == 0 and then["progress"] == 100
    assert notes(tmp_path, "catch") == []


def test_batch_errors_are_clear(tmp_path, storage):
    config = config_for(tmp_path, storage)
    with connect(config=str(config)) as q:
        with pytest.raises(BatchNotFound, match="no batch with id 12345"):
            q.batch_status(12345)
        with pytest.raises(BatchNotFound, match="no batch with id 12345"):
            q.batch_add(12345, [(MEMBER, ())])
        with pytest.raises(BatchNotFound):
            q.batch_cancel(12345)
        with pytest.raises(BatchNotFound):
            q.batch_retry(12345)
        with pytest.raises(Exception, match="cannot take it"):
            q.batch([(MEMBER, ())], finally_="jobs.examples:whoami")  # takes no argument
        with pytest.raises(Exception, match="served by no pool"):
            q.batch([(MEMBER, ())], queue="nowhere", then=CALLBACKS["then"])
        with pytest.raises(Exception, match="batch item 1"):
            q.batch([(MEMBER, ()), "not an item"])
        assert q.batches() == []  # nothing refused was stored


def test_the_batch_commands(tmp_path, start_supervisor, storage):
    config = config_for(tmp_path, storage)
    start_supervisor(config)
    fixed = tmp_path / "fixed"
    with connect(config=str(config)) as q:
        b = q.batch([("jobs.batch_examples:fails_until", (str(fixed),)), (MEMBER, ())],
                    name=str(tmp_path), allow_failures=True, **CALLBACKS)
        finished(q, b.id, tmp_path)
        held = q.batch([(MEMBER, (), {}, {"_delay": 3600})], name="held")
    code, out, err = jobrt("batch", "list", "--config", config)
    assert code == 0 and err == ""
    assert [line.split()[0] for line in out.splitlines()] == [str(held.id), str(b.id)]
    code, out, _ = jobrt("batch", "list", "--config", config, "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [held.id, b.id]
    code, out, _ = jobrt("batch", "show", b.id, "--config", config)
    assert code == 0
    for text in ("progress: 100%", "succeeded: 1", "failed: 1", f"failed jobs: {b.job_ids[0]}",
                 f"then: {CALLBACKS['then']}", f"finally: {CALLBACKS['finally_']}", "finished_at: 20"):
        assert text in out, (text, out)
    code, out, _ = jobrt("batch", "show", b.id, "--config", config, "--json")
    assert code == 0 and json.loads(out)["failed_job_ids"] == [b.job_ids[0]]
    fixed.touch()
    code, out, _ = jobrt("batch", "retry", b.id, "--config", config, "--json")
    assert (code, json.loads(out)) == (0, {"id": b.id, "retried": 1})
    code, out, _ = jobrt("batch", "cancel", held.id, "--config", config)
    assert code == 0 and "pending members are cancelled" in out
    with connect(config=str(config)) as q:
        assert q.batch_status(held.id).cancelled == 1
        wait_for(lambda: q.batch_status(b.id).succeeded == 2, 60, "the retried member")
    for verb in ("show", "cancel", "retry"):
        code, out, err = jobrt("batch", verb, 999, "--config", config)
        assert (code, out) == (1, "") and err.count("\n") == 1 and "no batch with id 999" in err
    code, out, err = jobrt("batch", "show", 999, "--config", config, "--json")
    assert code == 1 and json.loads(out)["exit"] == 1
    code, _, err = jobrt("batch", "show", "x", "--config", config)
    assert code == 2 and "must be a batch id" in err


@pytest.mark.postgres
def test_the_race(tmp_path, start_supervisor, pg_url):
    """Two supervisors on one PostgreSQL database; each batch has one member on a queue only
    the first serves and one on a queue only the second serves, and the two meet at a barrier
    (jobs.batch_examples:barrier), so they end within a poll of each other, on different
    supervisors, and their settles race to be the batch's last. Whoever wins, then and
    finally each run exactly once per batch, and the counts are exact.
    JOBRT_RACE_BATCHES=N runs N batches (the issue's figure is 500, the default here)."""
    batches = RACE_BATCHES or 500
    barriers, out = tmp_path / "barriers", tmp_path / "notes"
    barriers.mkdir()
    out.mkdir()
    for side in "ab":
        (tmp_path / side).mkdir()
        pools = {"default": {"workers": 3, "queues": ["default", f"side-{side}"]}}
        start_supervisor(write_config(tmp_path / side, pools=pools, storage={"url": pg_url},
                                      jobs=JOBS))
    callbacks = dict(then=CALLBACKS["then"], finally_=CALLBACKS["finally_"], queue="default")
    with connect(pg_url) as q:
        made = []
        for n in range(batches):
            members = [("jobs.batch_examples:barrier", (str(barriers), str(n), side), {},
                        {"_queue": f"side-{'ab'[side]}"}) for side in (0, 1)]
            made.append(q.batch(members, name=str(out), **callbacks))
        wait_for(lambda: len(notes(out, "finally")) >= batches, 120, "every batch's finally")
        wait_for(lambda: idle(q), 60, "every job to end")
        records = {b.id: q.batch_status(b.id) for b in made}
        members = [[q.status(i) for i in b.job_ids] for b in made]
    then_ids = sorted(record["id"] for record in notes(out, "then"))
    finally_ids = sorted(record["id"] for record in notes(out, "finally"))
    assert then_ids == finally_ids == sorted(records), "then or finally ran other than once per batch"
    for record in records.values():
        assert (record.total, record.succeeded, record.pending, record.running, record.failed,
                record.cancelled) == (2, 2, 0, 0, 0, 0), record
        assert record.finished_at is not None
    for record in notes(out, "finally"):
        assert (record["succeeded"], record["pending"], record["running"]) == (2, 0, 0), record
    # The race happened: the two members of a batch ran on different supervisors (their
    # queues say so: each is served by one) and ended within a few milliseconds.
    apart = sorted(abs(pair[0].result - pair[1].result) for pair in members)
    print(f"{batches} batches; members' ends apart: median {apart[len(apart) // 2] * 1000:.2f} ms, "
          f"90th percentile {apart[len(apart) * 9 // 10] * 1000:.2f} ms")
    assert apart[len(apart) // 2] < 0.05
