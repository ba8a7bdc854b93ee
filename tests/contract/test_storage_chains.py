"""Chains through the storage contract, on memory, SQLite and PostgreSQL: each step is
enqueued by the transaction that records the previous one's success; a step that fails for
good ends the chain and enqueues catch once; a cancelled step cancels the chain."""

from __future__ import annotations

import orjson

from runtime.storage import NewJob, Outcome

LEASE = 30.0


def step(name="jobs.examples:add", delay=0.0, **extra) -> NewJob:
    return NewJob("default", name, orjson.dumps([[1, 2], {}]), delay, **extra)


def claim(store, now=100.0, limit=10):
    return store.claim("s1", ["default"], limit, now + LEASE, now)


def end(job, state="succeeded", at=101.0, **extra):
    return Outcome(job.id, job.attempt, state, at, queue=job.queue, name=job.name, **extra)


def test_steps_run_one_after_another(store):
    chain_id, first = store.create_chain([step("a"), step("b", delay=5.0), step("c")],
                                         "cb:catch", "callbacks", 50.0)
    record = store.chain(chain_id)
    assert (record.state, record.steps, record.jobs) == ("running", ["a", "b", "c"], [first])
    (a,) = claim(store)
    assert a.id == first and claim(store) == []  # b waits for a
    store.settle("s1", [end(a, at=101.0)])
    b_id = store.chain(chain_id).jobs[1]
    assert store.get(b_id).available_at == 106.0  # its delay counts from a's success
    assert claim(store, now=105.0) == []
    (b,) = claim(store, now=106.0)
    store.settle("s1", [end(b, at=107.0)])
    (c,) = claim(store, now=108.0)
    assert c.name == "c"
    store.settle("s1", [end(c, at=109.0)])
    record = store.chain(chain_id)
    assert (record.state, record.finished_at, len(record.jobs)) == ("succeeded", 109.0, 3)
    assert store.get(c.id + 1) is None  # no catch


def test_a_failed_step_ends_the_chain_and_catch_runs_once(store):
    chain_id, first = store.create_chain([step("a"), step("b")], "cb:catch", "callbacks", 50.0)
    (a,) = claim(store)
    store.settle("s1", [end(a, "pending", at=101.0, available_at=101.0, error="retry")])
    assert store.chain(chain_id).state == "running"  # a retry is not an end
    (a,) = claim(store, now=102.0)
    store.settle("s1", [end(a, "failed", at=103.0, error="boom")])
    store.settle("s1", [end(a, "failed", at=104.0, error="again")])  # repeated: fenced
    record = store.chain(chain_id)
    assert (record.state, record.jobs, record.finished_at) == ("failed", [first], 103.0)
    catch = store.get(first + 1)
    assert (catch.name, catch.queue, catch.args[0]["state"], catch.args[0]["jobs"]) == (
        "cb:catch", "callbacks", "failed", [first])
    assert store.get(first + 2) is None


def test_a_cancelled_step_cancels_the_chain(store):
    chain_id, first = store.create_chain([step("a"), step("b")], "cb:catch", "callbacks", 50.0)
    assert store.cancel(first, 60.0) == "pending"
    record = store.chain(chain_id)
    assert (record.state, record.finished_at) == ("cancelled", 60.0)
    assert store.get(first + 1) is None  # no catch, no next step


def test_a_step_behind_a_gate_waits_its_turn(store):
    store.enqueue([step("other", overlap_key="k")])
    (held,) = claim(store)
    chain_id, first = store.create_chain([step("a", overlap_key="k")], None, "callbacks", 50.0)
    assert claim(store) == []
    store.settle("s1", [end(held, overlap_key="k")])
    assert [j.id for j in claim(store, now=102.0)] == [first]
    assert store.chain(9999) is None


def test_a_retried_failed_step_takes_the_chain_on(store):
    chain_id, first = store.create_chain([step("a"), step("b")], "cb:catch", "callbacks", 50.0)
    assert store.get(first).chain_id == chain_id
    (a,) = claim(store)
    store.settle("s1", [end(a, "failed", at=101.0, error="boom")])
    assert store.chain(chain_id).state == "failed"
    assert store.retry_failed([first], 102.0) == 1  # `jobrt failed retry`
    (a,) = claim(store, now=103.0)
    store.settle("s1", [end(a, at=104.0)])
    record = store.chain(chain_id)
    assert (record.state, record.finished_at, len(record.jobs)) == ("running", None, 2)
    assert store.get(record.jobs[1]).name == "b"
    assert sum(1 for i in range(1, 10) if (r := store.get(i)) and r.name == "cb:catch") == 1


def test_finished_chains_are_pruned_with_the_jobs(store):
    done, first = store.create_chain([step("a")], None, "callbacks", 50.0)
    running, _ = store.create_chain([step("b", delay=1000.0)], None, "callbacks", 50.0)
    (a,) = claim(store)
    store.settle("s1", [end(a, at=101.0)])
    assert store.prune(101.0, 10) == 0 and store.chain(done) is not None  # not before 101
    store.prune(102.0, 10)
    assert store.chain(done) is None and store.chain(running) is not None
    assert store.get(first) is None
