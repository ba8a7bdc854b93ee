"""Retry, backoff and failure rules, as pure functions."""

import pytest

from runtime.config.load import config_from_dict
from runtime.options import NO_OPTIONS, JobOptions
from runtime.storage.base import ClaimedJob
from runtime.workers.retry_rules import (
    CRASH, MEMORY, SIGNAL, TIMEOUT, errored, released, returned,
)

POOL = config_from_dict({"pools": {"default": {"tries": 3, "backoff": [10, 60]}}}).pools["default"]


def job(attempt, exceptions=0, **options):
    return ClaimedJob(7, "default", "j:j", b"[[],{}]", attempt, JobOptions(**options).encode(),
                      exceptions)


def options_of(claimed):
    return JobOptions.decode(claimed.options)


def test_retries_with_the_pool_backoff_until_tries_run_out():
    first = errored(job(1), NO_OPTIONS, POOL, "E", "tb", at=1000.0)
    assert (first.state, first.available_at, first.error) == ("pending", 1010.0, "E")
    second = errored(job(2), NO_OPTIONS, POOL, "E", "tb", at=1000.0)
    assert second.available_at == 1060.0
    last = errored(job(3), NO_OPTIONS, POOL, "E", "tb", at=1000.0)
    assert last.state == "failed" and "attempt 3 of 3" in last.error and last.traceback == "tb"


def test_job_options_override_the_pool():
    claimed = job(1, tries=1)
    assert errored(claimed, options_of(claimed), POOL, "E", None, 0.0).state == "failed"
    claimed = job(1, backoff=5)
    assert errored(claimed, options_of(claimed), POOL, "E", None, 0.0).available_at == 5.0


def test_retry_until_ends_retries():
    claimed = job(1, retry_until=1005.0)
    assert errored(claimed, options_of(claimed), POOL, "E", None, 1000.0).state == "failed"


def test_max_exceptions_fails_a_job_that_raised_that_often_with_tries_left():
    claimed = job(2, exceptions=1, tries=10, max_exceptions=2)
    last = errored(claimed, options_of(claimed), POOL, "E", "tb", 0.0)
    assert (last.state, last.exception) == ("failed", True)
    assert last.error == "E (exception 2 of max_exceptions 2)"
    claimed = job(2, exceptions=0, tries=10, max_exceptions=2)
    assert errored(claimed, options_of(claimed), POOL, "E", "tb", 0.0).state == "pending"


@pytest.mark.parametrize("reason", [TIMEOUT, MEMORY, SIGNAL, CRASH])
def test_timeouts_and_deaths_use_tries_not_exceptions(reason):
    claimed = job(2, exceptions=5, tries=10, max_exceptions=1)
    outcome = errored(claimed, options_of(claimed), POOL, "killed", None, 0.0, reason)
    assert (outcome.state, outcome.exception) == ("pending", False)


def test_returned_jobs_do_not_count_the_attempt():
    outcome = returned(job(2), 50.0, "why")
    assert outcome.undo_attempt and outcome.state == "pending" and outcome.available_at == 50.0


def test_a_release_uses_up_its_try():
    assert released(job(2), NO_OPTIONS, POOL, 5.0, 100.0).available_at == 105.0
    last = released(job(3), NO_OPTIONS, POOL, 5.0, 100.0)
    assert last.state == "failed" and "released itself on its last try (attempt 3 of 3)" in last.error


@pytest.mark.parametrize("options", [JobOptions(), JobOptions(timeout=1.5), JobOptions(tries=2, backoff=[1, 2]),
                                     JobOptions(backoff={"base": 1, "factor": 2, "max": 9, "jitter": 0},
                                                retry_until=12.5, max_exceptions=3)])
def test_options_are_stored_and_decoded_unchanged(options):
    assert JobOptions.decode(options.encode()) == options
