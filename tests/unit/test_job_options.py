"""One set of rules for a job's options, wherever they are given: @job at import, the
_-prefixed enqueue overrides, and the [pools.*] defaults."""

from __future__ import annotations

import tempfile

import pytest

from runtime import PayloadError, connect, job
from runtime.config.load import config_from_dict
from runtime.errors import ConfigError

BAD = [("queue", "a b"), ("queue", ""), ("timeout", 0), ("timeout", float("nan")), ("tries", 0), ("tries", 1.5),
       ("priority", 2**40), ("priority", True), ("backoff", "soon"), ("retry_until", -1),
       ("max_exceptions", 0), ("max_exceptions", 2.5), ("max_exceptions", "3"), ("unique_for", 0),
       ("unique_until", "later")]


@pytest.mark.parametrize("option,value", BAD)
def test_a_bad_job_decorator_fails_at_import_naming_the_option(option, value):
    with pytest.raises(ValueError, match=rf"^@job\({option}=\.\.\.\): must be"):
        @job(**{option: value})
        def task():
            pass


@pytest.mark.parametrize("option,value", BAD)
def test_the_same_values_are_refused_at_enqueue_naming_the_option(option, value):
    with tempfile.TemporaryDirectory() as directory, connect(f"sqlite:///{directory}/j.db") as q:
        with pytest.raises(PayloadError, match=rf"_{option} must be"):
            q.enqueue("jobs.examples:noop", **{f"_{option}": value})


@pytest.mark.parametrize("option,value", [(o, v) for o, v in BAD if o in ("timeout", "tries")])
def test_and_as_pool_defaults(option, value):
    with pytest.raises(ConfigError, match=rf"pools\.default\.{option}: must be"):
        config_from_dict({"pools": {"default": {option: value}}})


def test_the_messages_say_the_same_thing_everywhere():
    with pytest.raises(ValueError) as decorator:
        job(tries=0)(lambda: None)
    with pytest.raises(ConfigError) as config:
        config_from_dict({"pools": {"default": {"tries": 0}}})
    assert str(decorator.value).split(": ", 1)[1] == str(config.value).split(": ", 1)[1] \
        == "must be an integer >= 1, got 0"
