"""runtime.testing.eager_queue: jobs run inline when the test asks, on a fake clock, by the
rules storage and the workers apply under `jobrt start`: retries and backoff, delays,
unique, without_overlapping, rate limits, batches and chains with their callbacks, failure
hooks, events, release() and fail(); run_in_worker enforces timeouts in a forked worker."""

from __future__ import annotations

import pytest

import runtime
from runtime import Batch, attempt, current_batch, events, fail, job, job_id, previous_result, release
from runtime.testing import EagerError, eager_queue

RAN: list = []  # what the jobs below did, in order: they run in this process


@pytest.fixture(autouse=True)
def _forget():
    RAN.clear()


@job(tries=3, backoff=[10, 60])
def flaky(fails: int) -> int:
    RAN.append(("flaky", attempt(), runtime.connect("memory://").clock()))
    if attempt() <= fails:
        raise RuntimeError(f"attempt {attempt()} fails")
    return attempt()


@job
def note(value=None):
    RAN.append(("note", value))
    return value


@job(unique=True)
def once(key: str) -> None:
    RAN.append(("once", key))


@job(without_overlapping="shared-key")
def exclusive(n: int) -> None:
    RAN.append(("exclusive", n))


@job(rate_limit="2/m")
def limited(n: int) -> None:
    RAN.append(("limited", n, runtime.connect("memory://").clock()))


@job(tries=1)
def broken(reason: str = "broken") -> None:
    raise RuntimeError(reason)


@broken.on_failure
def broken_failed(record: dict) -> None:
    RAN.append(("hook", record["id"], record["error"]))


@job(tries=3)
def releases(delay: float) -> int:
    if attempt() < 3:
        release(delay)
    return attempt()


@job(tries=5)
def gives_up() -> None:
    fail("no point trying again")


@job
def in_batch(value):
    RAN.append(("member", job_id(), current_batch().total))
    return value


@job
def step(value):
    RAN.append(("step", value, previous_result()))
    return value * 10


@job
def callback(record: dict) -> None:
    RAN.append(("callback", record.get("name"), record.get("failed_job_ids", record.get("state"))))


@job(tries=2, timeout=0.5)
def hangs() -> None:
    import time
    time.sleep(60)


@job
def runs_the_queue() -> None:
    runtime.connect("memory://").run_pending()


@job
def forever() -> None:
    runtime.connect("memory://").enqueue(forever)


def test_retries_wait_their_backoff_on_the_fake_clock():
    with eager_queue() as q:
        start = q.clock()
        job_id_ = runtime.connect("sqlite:///app.db").enqueue(flaky, 2)
        assert q.run_pending() == 1
        assert q.status(job_id_).state == "pending"
        assert q.run_pending() == 0  # its retry waits 10 s
        q.advance(9.5)
        assert q.run_pending() == 0
        q.advance(0.5)
        assert q.run_pending() == 1
        assert q.run_until_empty() == 1  # the clock moves to the next retry, 60 s later
        record = q.status(job_id_)
        assert (record.state, record.attempts, record.result) == ("succeeded", 3, 3)
        assert [(a, t - start) for _, a, t in RAN] == [(1, 0), (2, 10), (3, 70)]


def test_a_job_that_fails_every_try_fails_and_its_hook_runs():
    with eager_queue() as q:
        failing = q.enqueue(flaky, 5)
        hooked = q.enqueue(broken, "boom")
        q.run_until_empty()
        assert q.status(failing).state == "failed"
        assert "attempt 3 fails (attempt 3 of 3)" in q.status(failing).error
        assert ("hook", hooked, "RuntimeError: boom (attempt 1 of 1)") in RAN


def test_delays_run_when_due():
    with eager_queue() as q:
        later = q.enqueue(note, "later", _delay=300)
        now = q.enqueue(note, "now")
        q.run_pending()
        assert (q.status(now).state, q.status(later).state) == ("succeeded", "pending")
        q.advance(300)
        q.run_pending()
        assert q.status(later).state == "succeeded"


def test_unique_jobs_are_made_once_while_live():
    with eager_queue() as q:
        first = q.enqueue(once, "a")
        assert q.enqueue(once, "a") == first
        q.run_until_empty()
        assert q.enqueue(once, "a") != first  # its key is free once it ended
        q.run_until_empty()
        assert RAN == [("once", "a"), ("once", "a")]


def test_without_overlapping_runs_one_at_a_time_in_order():
    with eager_queue() as q:
        ids = [q.enqueue(exclusive, n) for n in range(4)]
        q.run_until_empty()
        assert RAN == [("exclusive", n) for n in range(4)]
        assert [q.status(i).state for i in ids] == ["succeeded"] * 4


def test_a_rate_limit_spaces_the_starts_on_the_fake_clock():
    with eager_queue() as q:
        start = q.clock()
        for n in range(5):
            q.enqueue(limited, n)
        assert q.run_pending() == 2
        q.run_until_empty()
        assert [(n, t - start) for _, n, t in RAN] == [(0, 0), (1, 0), (2, 60), (3, 60), (4, 120)]


def test_release_and_fail():
    with eager_queue() as q:
        released = q.enqueue(releases, 30)
        failed = q.enqueue(gives_up)
        start = q.clock()
        q.run_until_empty()
        assert q.clock() - start == 60  # two releases of 30 s
        assert (q.status(released).state, q.status(released).result) == ("succeeded", 3)
        record = q.status(failed)
        assert (record.state, record.attempts, record.error) == ("failed", 1, "no point trying again")


def test_a_batch_with_a_failure_runs_catch_and_finally_but_not_then():
    with eager_queue() as q:
        b = q.batch([(in_batch, (1,)), (broken, ("member failed",)), (in_batch, (3,))], name="b",
                    then=callback, catch=callback, finally_=callback, allow_failures=True)
        q.run_until_empty()
        status = q.batch_status(b.id)
        assert (status.succeeded, status.failed, status.finished_at is not None) == (2, 1, True)
        assert [r for r in RAN if r[0] == "callback"] == [("callback", "b", [b.job_ids[1]])] * 2
        assert ("member", b.job_ids[0], 3) in RAN


def test_a_batch_that_succeeds_runs_then_and_finally():
    with eager_queue() as q:
        b = q.batch([(in_batch, (n,)) for n in range(3)], name="ok", then=callback, finally_=callback)
        q.run_until_empty()
        assert [r for r in RAN if r[0] == "callback"] == [("callback", "ok", [])] * 2
        assert q.batch_status(b.id).succeeded == 3


def test_a_chain_passes_results_and_a_failing_step_runs_catch():
    with eager_queue() as q:
        good = q.chain([(step, (1,)), (step, (2,)), Batch([(in_batch, (0,))]), (step, (3,))])
        bad = q.chain([(step, (4,)), (broken, ()), (step, (5,))], catch=callback)
        q.run_until_empty()
        assert q.chain_status(good.id).state == "succeeded"
        assert q.chain_status(bad.id).state == "failed"
        steps = [r[1:] for r in RAN if r[0] == "step"]
        assert (1, None) in steps and (2, 10) in steps and (4, None) in steps
        assert [s for s in steps if s[0] == 3][0][1]["succeeded"] == 1  # after a batch: its record
        assert (5, 40) not in steps and ("callback", None, "failed") in RAN


def test_events_hooks_run_around_each_run():
    seen = []

    @events.before_run
    def before(event):
        seen.append(("before", event.name, event.attempt))

    @events.after_failure
    def failed(event):
        seen.append(("failure", event.name, event.error))

    try:
        with eager_queue() as q:
            q.enqueue(broken, "x")
            q.run_until_empty()
        assert ("before", "test_testing_eager:broken", 1) in seen
        assert ("failure", "test_testing_eager:broken", "RuntimeError: x (attempt 1 of 1)") in seen
    finally:
        globals()["__jobrt_events__"].clear()  # this module's hooks: not for the next test


@job
def cancels(other: int) -> str:
    return runtime.connect("memory://").cancel(other)


def test_cancel_of_a_claimed_job_cancels_it():
    with eager_queue() as q:
        pending = q.enqueue(note, "a")
        q.cancel(pending)
        canceller = q.enqueue(cancels, pending + 2)
        claimed = q.enqueue(note, "b")  # claimed with the canceller, cancelled before it runs
        q.run_pending()
        assert q.status(canceller).result == "running"
        assert (q.status(pending).state, q.status(claimed).state) == ("cancelled", "cancelled")
        assert RAN == []


def test_a_job_that_enqueues_itself_forever_is_stopped():
    with eager_queue() as q:
        q.enqueue(forever)
        with pytest.raises(EagerError, match="ran 50 jobs and more are due: does a job enqueue itself"):
            q.run_until_empty(max_jobs=50)
        assert q.counts()["default"]["running"] == 0  # the claimed ones went back


def test_running_the_queue_from_a_job_is_that_jobs_error():
    with eager_queue() as q:
        nested = q.enqueue(runs_the_queue, _tries=1)
        q.run_until_empty()
        record = q.status(nested)
        assert record.state == "failed" and "called from a job" in record.error


def test_run_in_worker_enforces_the_timeout():
    with eager_queue(run_in_worker=True) as q:
        hung = q.enqueue(hangs)
        fine = q.enqueue(note, "in a worker")
        q.run_until_empty()
        record = q.status(hung)
        assert (record.state, record.attempts) == ("failed", 2)
        assert "timed out after 0.5 s" in record.error
        assert q.status(fine).result == "in a worker"


def test_the_fixture(jobrt_eager):
    runtime.connect("sqlite:///app.db").enqueue(note, "fixture")
    assert jobrt_eager.run_until_empty() == 1
    assert RAN == [("note", "fixture")]
