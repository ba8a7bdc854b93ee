"""Nested workflows through the storage contract, on memory, SQLite and PostgreSQL: a batch
as a chain's step (the chain goes on when the batch finished with every member succeeded),
and a chain as a batch's member (its steps count in the batch, the steps it never ran
count as cancelled)."""

from __future__ import annotations

import orjson

from runtime.storage import NewJob, Outcome
from runtime.storage.workflows import BatchStep, ChainMember, NewBatch

LEASE = 30.0
CALLBACKS = dict(then="cb:then", catch="cb:catch", finally_="cb:finally")


def job(name="a", delay=0.0) -> NewJob:
    return NewJob("default", name, orjson.dumps([[1, 2], {}]), delay)


def claim(store, now=100.0, limit=10):
    """The jobs claimed, in the order of their names."""
    return sorted(store.claim("s1", ["default"], limit, now + LEASE, now), key=lambda j: j.name)


def end(claimed, state="succeeded", at=101.0, **extra):
    return Outcome(claimed.id, claimed.attempt, state, at, queue=claimed.queue,
                   name=claimed.name, **extra)


def made_after(store, since: int) -> list[str]:
    """The names of the jobs made after job `since`, in id order."""
    names, job_id = [], since + 1
    while (record := store.get(job_id)) is not None:
        names.append(record.name)
        job_id += 1
    return names


def test_a_batch_step_runs_when_its_chain_reaches_it_and_the_chain_goes_on_after_it(store):
    middle = BatchStep(NewBatch("callbacks", "middle", **CALLBACKS), [job("m1"), job("m2", 5.0)])
    chain_id, first = store.create_chain([job("a"), middle, job("c")], "cb:chain", "callbacks", 50.0)
    record = store.chain(chain_id)
    assert record.steps == ["a", {"batch": "middle", "members": 2}, "c"]
    (a,) = claim(store)
    store.settle("s1", [end(a, at=101.0)])
    record = store.chain(chain_id)
    batch_id = record.jobs[1]["batch"]
    batch = store.batch(batch_id)
    assert (record.state, batch.name, batch.total, batch.pending) == ("running", "middle", 2, 2)
    (m1,) = claim(store, now=102.0)  # m2's delay counts from when the batch was made
    assert m1.name == "m1" and claim(store, now=105.0) == []
    (m2,) = claim(store, now=106.0)
    store.settle("s1", [end(m1, at=106.5)])
    assert len(store.chain(chain_id).jobs) == 2  # c waits for the whole batch
    store.settle("s1", [end(m2, at=107.0)])
    assert made_after(store, m2.id) == ["cb:then", "cb:finally", "c"]
    (c,) = claim(store, now=108.0)
    store.settle("s1", [end(c, at=109.0)])
    record = store.chain(chain_id)
    assert (record.state, record.finished_at, record.jobs) == (
        "succeeded", 109.0, [first, {"batch": batch_id}, c.id])


def test_a_failed_member_of_a_batch_step_fails_the_chain_once(store):
    middle = BatchStep(NewBatch("callbacks", None, catch="cb:catch"), [job("m1"), job("m2")])
    chain_id, first = store.create_chain([middle, job("c")], "cb:chain", "callbacks", 50.0)
    assert first is None  # the first step is a batch
    m1, m2 = claim(store)
    store.settle("s1", [end(m1, "failed", at=102.0, error="boom")])
    assert store.chain(chain_id).state == "running"  # m2 still runs
    store.settle("s1", [end(m2, at=103.0)])
    record = store.chain(chain_id)
    assert (record.state, record.finished_at) == ("failed", 103.0)
    # the batch's catch came at m1's failure, the chain's once the batch finished
    assert made_after(store, m2.id) == ["cb:catch", "cb:chain"]
    assert store.get(m2.id + 2).args[0]["state"] == "failed"


def test_an_empty_batch_step_lets_its_chain_go_on_at_once(store):
    chain_id, first = store.create_chain(
        [BatchStep(NewBatch("callbacks", "none", then="cb:then"), []), job("b")], None,
        "callbacks", 50.0)
    record = store.chain(chain_id)
    assert first is None and len(record.jobs) == 2 and record.state == "running"
    assert [j.name for j in claim(store)] == ["b"]  # then went to its own queue


def test_a_chain_member_counts_each_step_and_the_batch_ends_after_its_last(store):
    batch_id, ids = store.create_batch(
        NewBatch("callbacks", "nested", **CALLBACKS),
        [job("x"), ChainMember([job("p"), job("q"), job("r")], "cb:chain", "callbacks")], 50.0)
    status = store.batch(batch_id)
    assert (status.total, status.pending) == (4, 4)
    p, x = claim(store)
    chain_id = store.get(p.id).chain_id
    assert (ids, store.chain(chain_id).batch_id) == ([x.id, p.id], batch_id)
    store.settle("s1", [end(x), end(p)])
    status = store.batch(batch_id)
    assert (status.succeeded, status.pending, status.finished_at) == (2, 2, None)
    (q,) = claim(store, now=102.0)
    assert store.get(q.id).batch_id == str(batch_id)
    store.settle("s1", [end(q, at=103.0)])
    (r,) = claim(store, now=104.0)
    store.settle("s1", [end(r, at=105.0)])
    assert made_after(store, r.id) == ["cb:then", "cb:finally"]
    status = store.batch(batch_id)
    assert (status.succeeded, status.progress, status.finished_at) == (4, 100, 105.0)


def test_a_failed_chain_member_counts_its_unrun_steps_as_cancelled(store):
    batch_id, _ = store.create_batch(
        NewBatch("callbacks", None, **CALLBACKS),
        [ChainMember([job("p"), job("q"), job("r")], "cb:chain", "callbacks"), job("x")], 50.0)
    p, x = claim(store)
    store.settle("s1", [end(p, "failed", at=102.0, error="boom")])
    status = store.batch(batch_id)
    # q and r never run; x runs on (a running member finishes), the batch's catch ran
    assert (status.failed, status.cancelled, status.running, status.finished_at) == (1, 2, 1, None)
    assert sorted(made_after(store, x.id)) == ["cb:catch", "cb:chain"]
    store.settle("s1", [end(x, at=103.0)])
    status = store.batch(batch_id)
    assert (status.succeeded, status.finished_at) == (1, 103.0)
    assert made_after(store, x.id)[-1] == "cb:finally"


def test_a_chain_member_stops_when_its_batch_is_cancelled(store):
    batch_id, _ = store.create_batch(
        NewBatch("callbacks", None, finally_="cb:finally"),
        [ChainMember([job("p"), job("q")], None, "callbacks")], 50.0)
    (p,) = claim(store)
    assert store.batch_cancel(batch_id, 101.0) is True
    store.settle("s1", [end(p, at=102.0)])  # q is never enqueued
    status = store.batch(batch_id)
    assert (status.succeeded, status.cancelled, status.finished_at) == (1, 1, 102.0)
    chain = store.chain(store.get(p.id).chain_id)
    assert (chain.state, len(chain.jobs)) == ("cancelled", 1)
    assert made_after(store, p.id) == ["cb:finally"]


def test_a_retried_chain_member_goes_on_and_takes_its_steps_back(store):
    batch_id, _ = store.create_batch(
        NewBatch("callbacks", None, allow_failures=True, **CALLBACKS),
        [ChainMember([job("p"), job("q")], "cb:chain", "callbacks")], 50.0)
    (p,) = claim(store)
    store.settle("s1", [end(p, "failed", at=102.0, error="boom")])
    status = store.batch(batch_id)
    assert (status.failed, status.cancelled, status.finished_at) == (1, 1, 102.0)
    assert store.retry_failed([p.id], 103.0) == 1
    (p,) = [j for j in claim(store, now=104.0) if j.name == "p"]
    store.settle("s1", [end(p, at=105.0)])
    status = store.batch(batch_id)
    assert (status.failed, status.cancelled, status.pending, status.finished_at) == (0, 0, 1, None)
    (q,) = [j for j in claim(store, now=106.0) if j.name == "q"]
    store.settle("s1", [end(q, at=107.0)])
    status = store.batch(batch_id)
    assert (status.succeeded, status.finished_at) == (2, 107.0)
    assert store.chain(store.get(q.id).chain_id).state == "succeeded"
