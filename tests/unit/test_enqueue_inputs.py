"""Hostile inputs at enqueue: any arguments and options either enqueue or raise PayloadError /
UnknownJob with a message, never another exception and never a half-written batch."""

from __future__ import annotations

import math
import tempfile
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime import PayloadError, UnknownJob, connect, job
from tests.conftest import write_config

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary()
    | st.sampled_from([object(), math.nan, math.inf, "\ud800", 2**70, {1, 2}, (1, 2)]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4) | st.integers(), inner,
                                                               max_size=4),
    max_leaves=12)
options = st.dictionaries(
    st.sampled_from(["_queue", "_delay", "_timeout", "_tries", "_backoff", "_priority", "_unique", "_retry_until"]),
    anything, max_size=3)


@pytest.fixture(scope="module")
def queue():
    with tempfile.TemporaryDirectory() as directory:
        with connect(f"sqlite:///{directory}/fuzz.db") as q:
            yield q


def total(q) -> int:
    return sum(sum(states.values()) for states in q.counts().values())


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(args=st.lists(anything, max_size=3), kwargs=st.dictionaries(st.text(max_size=5), anything, max_size=3),
       opts=options)
def test_any_arguments_enqueue_or_fail_clearly(queue, args, kwargs, opts):
    before = total(queue)
    started = time.time()
    good = ("jobs.examples:echo", (1,))
    try:
        ids = queue.enqueue_many([good, ("jobs.examples:echo", args, kwargs, opts), good])
    except (PayloadError, UnknownJob) as exc:
        assert str(exc) and "\n" not in str(exc)
        assert total(queue) == before  # all or nothing
    else:
        # a _unique key may name a job stored by an earlier example: its id comes back
        created = {i for i in ids if queue.status(i).created_at >= started}
        assert total(queue) == before + len(created)
        if ids[1] in created:
            record = queue.status(ids[1])
            assert [record.args, record.kwargs] == orjson.loads(orjson.dumps([args, kwargs]))  # tuples -> lists


@pytest.mark.parametrize("name", ["os:system", "jobs.examples:nope", "no.such.module:f", "", "x" * 500])
def test_unknown_names_are_refused(queue, name):
    with pytest.raises(UnknownJob):
        queue.enqueue(name)


@pytest.mark.parametrize("option,value", [("_tries", 0), ("_timeout", 0), ("_delay", -1), ("_delay", math.nan),
                                          ("_priority", 1.5), ("_queue", 3), ("_backoff", "soon")])
def test_bad_options_are_refused(queue, option, value):
    with pytest.raises(PayloadError, match=option):
        queue.enqueue("jobs.examples:noop", **{option: value})


@pytest.mark.parametrize("call", ["enqueue", "enqueue_many"])
def test_misspelt_options_are_refused_by_name(queue, call):
    """A typo such as _dealy must not become a job argument the job then fails on."""
    before = total(queue)
    with pytest.raises(PayloadError, match="_dealy.*did you mean _delay"):
        if call == "enqueue":
            queue.enqueue("jobs.examples:sleep", 0.1, _dealy=300)
        else:
            queue.enqueue_many([("jobs.examples:sleep", (0.1,), {}, {"_dealy": 300})])
    assert total(queue) == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=12).map(lambda s: "_" + s), value=anything)
def test_any_underscore_keyword_is_an_option_or_refused(queue, name, value):
    before = total(queue)
    try:
        queue.enqueue("jobs.examples:echo", 1, **{name: value})
    except (PayloadError, UnknownJob) as exc:
        assert str(exc) and "\n" not in str(exc)
        assert total(queue) == before
    else:
        assert name in ("_queue", "_delay", "_timeout", "_tries", "_backoff", "_priority", "_unique",
                        "_retry_until")


# -- with the config known, a job no worker of it would run is refused ---------------------

def _send_email(to: str, subject: str) -> None: ...


_send_email.__module__, _send_email.__qualname__ = "__main__", "send_email"  # as the README's script
send_email = job(queue="emails", timeout=120, tries=3, backoff=[30, 120, 300])(_send_email)


@pytest.fixture
def configured(tmp_path):
    config = write_config(tmp_path, pools={"default": {}, "batch": {"queues": ["bulk"]}})
    with connect(config=str(config)) as q:
        yield q, str(config)


def test_a_queue_no_pool_of_the_config_serves_is_refused(configured):
    q, config = configured
    with pytest.raises(PayloadError) as refused:
        q.enqueue("jobs.examples:echo", 1, _queue="emails")
    assert str(refused.value) == (
        f"job jobs.examples:echo: queue 'emails' is served by no pool in {config} (pools: default: "
        f"high, default, low; batch: bulk); add it to a pool's queues or pass _queue= (jobrt enqueue "
        f"--queue) naming a queue a pool serves")
    with pytest.raises(PayloadError, match="queue 'emails' is served by no pool"):
        q.enqueue_many([("jobs.examples:echo", (1,)), ("jobs.examples:echo", (2,), {}, {"_queue": "emails"})])
    assert total(q) == 0  # all or nothing
    ids = q.enqueue_many([("jobs.examples:echo", (1,)), ("jobs.examples:echo", (2,), {}, {"_queue": "bulk"})])
    assert [q.status(i).queue for i in ids] == ["default", "bulk"]


def test_a_job_the_config_modules_do_not_register_is_refused(configured):
    q, config = configured
    with pytest.raises(UnknownJob) as refused:  # importable, but not in [jobs] modules
        q.enqueue("jobs.chaos:quick", "/dev/null")
    assert str(refused.value) == (
        f"job 'jobs.chaos:quick' is not in [jobs] modules of {config}, so no worker would run it; "
        f"move it into a module listed there (jobs.examples)")
    with pytest.raises(UnknownJob) as refused:  # the README's example, run as a script
        q.enqueue_many([("jobs.examples:echo", (1,)), (send_email, ("a@example.com", "hi"))])
    assert str(refused.value).startswith(
        f"job '__main__:send_email' is not in [jobs] modules of {config}, so no worker would run it; "
        f"move it into a module listed there (jobs.examples); and its queue 'emails' is served by "
        f"no pool in {config}")
    with pytest.raises(UnknownJob, match="'__main__:send_email' is not in"):
        q.enqueue(send_email, "a@example.com", "hi", _queue="default")
    assert total(q) == 0


def test_without_the_config_such_jobs_are_still_enqueued(queue):
    before = total(queue)
    queue.enqueue(send_email, "a@example.com", "hi")
    queue.enqueue("jobs.chaos:quick", "/dev/null")
    queue.enqueue("jobs.examples:echo", 1, _queue="emails")
    assert total(queue) == before + 3


@job(tags=("tagged",))
def tagged_job(*args, **kwargs):
    pass


@job(unique=True)
def unique_job(*args, **kwargs):
    pass


@job(retry_until=60, priority=3, queue="low")
def deadline_job(*args, **kwargs):
    pass


@job(priority=2, queue="low", timeout=5)
def prioritised_job(*args, **kwargs):
    pass


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(calls=st.lists(st.tuples(
    st.sampled_from(["jobs.examples:echo", "jobs.examples:noop", tagged_job, unique_job, deadline_job,
                     prioritised_job]),
    st.lists(st.integers(-2**63, 2**63 - 1) | st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(-2**63, 2**63 - 1), max_size=2)), max_size=6))
def test_enqueue_many_builds_each_job_as_a_lone_enqueue_would(queue, calls):
    """enqueue_many takes a shorter way for a job that needs nothing but its arguments
    worked out per item: what it stores must be what enqueue stores."""
    now = 1000.0
    assert queue._new_jobs(calls, now, "enqueue_many") == [queue.new_job(j, a, k, {}, now) for j, a, k in calls]
