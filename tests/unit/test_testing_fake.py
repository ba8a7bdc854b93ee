"""runtime.testing.fake_queue: code under test calls runtime.connect() as in production and
its jobs are recorded, not stored or run; the assertions say what was expected and found;
the client's checks still apply; the pytest plugin's fixture and entry point."""

from __future__ import annotations

import importlib
import tomllib

import pytest

import runtime
from runtime import Batch, Chain, PayloadError, UnknownJob, job
from runtime.testing import EnqueuedJob, fake_queue
from tests.conftest import REPO, write_config


@job(queue="emails", tries=5, backoff=[1, 2])
def send_email(to: str, subject: str = "hi") -> None:
    raise AssertionError("a fake queue never runs a job")


@job(unique=True)
def sync(sku: str) -> None: ...


@job
def done(record: dict) -> None: ...


def signup(address: str, url: str = "sqlite:///var/prod.db") -> int:
    """Code under test: it connects as production code does."""
    with runtime.connect(url) as q:
        return q.enqueue(send_email, address, subject="welcome", _delay=300, _priority=5)


def test_code_under_test_enqueues_into_the_fake():
    with fake_queue() as q:
        signup("a@example.com")
        [found] = q.assert_enqueued(send_email, args=["a@example.com"], kwargs={"subject": "welcome"},
                                    times=1, queue="emails", delay=300, priority=5)
        assert isinstance(found, EnqueuedJob)
        assert (found.tries, found.backoff) == (5, [1, 2])  # the decorator's, resolved
        q.assert_enqueued("test_testing_fake:send_email")  # by name too
        q.assert_not_enqueued(sync)
        q.assert_not_enqueued(send_email, args=["b@example.com"])
        assert q.status(found.id).state == "pending"  # recorded, never run
    # outside the block, connect() opens real storage again
    assert type(runtime.connect("memory://")) is runtime.Queue


def test_failed_assertions_say_what_was_expected_and_recorded():
    with fake_queue() as q:
        q.assert_nothing_enqueued()
        signup("a@example.com")
        with pytest.raises(AssertionError) as caught:
            q.assert_enqueued(send_email, args=["z@example.com"])
        text = str(caught.value)
        assert "expected test_testing_fake:send_email args=['z@example.com'] enqueued at least once, found 0" in text
        assert "#1 test_testing_fake:send_email args=['a@example.com']" in text
        with pytest.raises(AssertionError, match="enqueued 2 times, found 1"):
            q.assert_enqueued(send_email, times=2)
        with pytest.raises(AssertionError, match="expected no test_testing_fake:send_email enqueued, found 1"):
            q.assert_not_enqueued(send_email)
        with pytest.raises(AssertionError, match="expected nothing enqueued"):
            q.assert_nothing_enqueued()
        with pytest.raises(TypeError, match="unknown job field"):
            q.assert_enqueued(send_email, dealy=300)
        with pytest.raises(TypeError, match="not a job"):
            q.assert_enqueued(signup)


def test_production_checks_still_apply():
    with fake_queue() as q:
        c = runtime.connect("sqlite:///app.db")
        with pytest.raises(PayloadError):
            c.enqueue(send_email, object())  # not JSON
        with pytest.raises(PayloadError, match="_dealy"):
            c.enqueue(send_email, "a", _dealy=3)
        with pytest.raises(UnknownJob):
            c.enqueue("nowhere:nothing")
        with pytest.raises(PayloadError):
            c.enqueue(send_email, "a", _tries=0)
        q.assert_nothing_enqueued()


def test_config_checks_apply_to_connect_with_config(tmp_path):
    config = write_config(tmp_path)  # serves high, default, low; modules: jobs.examples
    with fake_queue() as q:
        c = runtime.connect(config=str(config))
        c.enqueue("jobs.examples:echo", 1)
        with pytest.raises(UnknownJob, match="not in \\[jobs\\] modules"):
            c.enqueue(send_email, "a")  # a worker of that config would never run it
        [echo] = q.assert_enqueued("jobs.examples:echo", args=[1], times=1)
        assert (echo.timeout, echo.tries) == (30, 3)  # the defaults of the pool serving its queue


def test_a_fake_url_in_the_config_makes_connect_return_a_fake(tmp_path):
    config = write_config(tmp_path, storage={"url": "fake://"})
    q = runtime.connect(config=str(config))
    q.enqueue("jobs.examples:echo", 2)
    q.assert_enqueued("jobs.examples:echo", args=[2])
    assert type(runtime.connect("eager://")).__name__ == "EagerQueue"


def test_unique_duplicates_are_not_recorded_twice():
    with fake_queue() as q:
        c = runtime.connect("sqlite:///app.db")
        first = c.enqueue(sync, "sku-1")
        assert c.enqueue(sync, "sku-1") == first
        c.enqueue(sync, "sku-2")
        q.assert_enqueued(sync, args=["sku-1"], times=1)
        assert [j.unique_key is not None for j in q.jobs] == [True, True]


def test_batches_and_chains():
    with fake_queue() as q:
        c = runtime.connect("sqlite:///app.db")
        c.batch([(send_email, ("a",)), (send_email, ("b",))], name="mail", then=done, allow_failures=True)
        c.chain([(send_email, ("c",)), (sync, ("x",), {}, {"_unique": False}),
                 Batch([(send_email, ("d",))], name="inner")], catch=done)
        c.batch([(sync, ("y",)), Chain([(send_email, ("e",)), (send_email, ("f",))])])
        batch = q.assert_batched(lambda b: b.name == "mail" and b.then == "test_testing_fake:done")
        assert batch.names == ["test_testing_fake:send_email"] * 2 and batch.allow_failures
        assert [j.args for j in batch.jobs] == [["a"], ["b"]]
        q.assert_batched(lambda b: len(b.jobs) == 2 and b.names[0] == "test_testing_fake:sync")
        with pytest.raises(AssertionError, match="expected a batch matching the predicate, found 2 batches"):
            q.assert_batched(lambda b: b.name == "other")
        chain = q.assert_chained([send_email, sync, {"batch": "inner", "members": 1}], catch=done)
        assert chain.calls[0] == (["c"], {})  # (args, kwargs) of each job step
        q.assert_chained([send_email, send_email])  # the chain inside the second batch
        with pytest.raises(AssertionError, match="expected a chain of \\['test_testing_fake:sync'\\]"):
            q.assert_chained([sync])
        # only the chains' first steps are jobs yet; the later ones wait in their chains
        q.assert_enqueued(send_email, args=["c"])
        q.assert_not_enqueued(send_email, args=["f"])


def test_the_fixture(jobrt_fake):
    signup("x@example.com")
    jobrt_fake.assert_enqueued(send_email, args=["x@example.com"])


@pytest.mark.jobrt(config=str(REPO / "supervisor.toml"))
def test_the_fixture_takes_a_config_from_the_marker(jobrt_fake):
    with pytest.raises(UnknownJob):
        jobrt_fake.enqueue(send_email, "a")  # not in the config's [jobs] modules


def test_the_entry_point_is_declared_and_loads():
    with open(REPO / "pyproject.toml", "rb") as file:
        declared = tomllib.load(file)["project"]["entry-points"]["pytest11"]
    plugin = importlib.import_module(declared["jobrt"])
    assert callable(plugin.jobrt_fake) and callable(plugin.jobrt_eager)
