"""Hostile inputs at enqueue: any arguments and options either enqueue or raise PayloadError /
UnknownJob with a message, never another exception and never a half-written batch."""

from __future__ import annotations

import math
import tempfile
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime import PayloadError, UnknownJob, connect

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
