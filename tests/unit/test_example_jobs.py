"""The example jobs (jobs/examples.py), tested as a user tests their own: with the jobrt
pytest plugin's fixtures, no supervisor. jobrt_eager runs them inline on a fake clock;
jobrt_fake checks what is enqueued; @pytest.mark.jobrt passes the default config."""

from __future__ import annotations

import pytest

from jobs import examples
from runtime import UnknownJob
from tests.conftest import REPO

CONFIG = str(REPO / "supervisor.toml")


def test_echo_and_add_return_their_results(jobrt_eager):
    echoed = jobrt_eager.enqueue(examples.echo, "hello", n=1)
    added = jobrt_eager.enqueue(examples.add, 2, 3)
    assert jobrt_eager.run_pending() == 2
    assert jobrt_eager.status(echoed).result == {"args": ["hello"], "kwargs": {"n": 1}}
    assert jobrt_eager.status(added).result == 5


def test_flaky_succeeds_on_its_attempt(jobrt_eager):
    job_id = jobrt_eager.enqueue(examples.flaky, 3)
    jobrt_eager.run_until_empty()
    record = jobrt_eager.status(job_id)
    assert (record.state, record.attempts, record.result) == ("succeeded", 3, 3)


def test_flaky_past_its_tries_fails(jobrt_eager):
    job_id = jobrt_eager.enqueue(examples.flaky, 4)
    jobrt_eager.run_until_empty()
    assert jobrt_eager.status(job_id).error == "RuntimeError: attempt 3 fails on purpose (attempt 3 of 3)"


def test_fail_ends_in_the_failed_store(jobrt_eager):
    job_id = jobrt_eager.enqueue(examples.fail, "nope")
    jobrt_eager.run_until_empty()
    assert [r.id for r in jobrt_eager.storage.failed()] == [job_id]
    assert "RuntimeError: nope" in jobrt_eager.status(job_id).traceback


def test_release_once_comes_back_after_its_delay(jobrt_eager):
    job_id = jobrt_eager.enqueue(examples.release_once, 120)
    assert jobrt_eager.run_pending() == 1
    assert jobrt_eager.status(job_id).state == "pending"
    jobrt_eager.advance(120)
    jobrt_eager.run_pending()
    assert jobrt_eager.status(job_id).result == 2


def test_release_forever_is_ended_by_tries(jobrt_eager):
    job_id = jobrt_eager.enqueue(examples.release_forever, 5, _tries=4)
    assert jobrt_eager.run_until_empty() == 4
    assert "released itself on its last try (attempt 4 of 4)" in jobrt_eager.status(job_id).error


@pytest.mark.jobrt(config=CONFIG)
def test_the_default_config_serves_the_examples(jobrt_fake):
    jobrt_fake.enqueue("jobs.examples:echo", "hi", _queue="high")
    jobrt_fake.assert_enqueued(examples.echo, args=["hi"], queue="high", times=1)
    with pytest.raises(UnknownJob, match="not in \\[jobs\\] modules"):
        jobrt_fake.enqueue("jobs.chaos:anything")
