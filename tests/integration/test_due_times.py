"""A supervisor wakes when the retries and releases it wrote are due, not at its next poll:
with `poll` an hour long, these would otherwise wait an hour."""

from __future__ import annotations

import pytest

from runtime import connect
from tests.conftest import END_STATES, wait_for, write_config


@pytest.fixture
def queue(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, pools={"default": {"workers": 2}}, storage={**storage, "poll": 3600})
    start_supervisor(config)
    with connect(config=str(config)) as q:
        yield q


def ended(q, job_id):
    return wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 30, f"job {job_id} to end")


def test_a_retry_runs_when_due_not_at_the_next_poll(queue):
    record = ended(queue, queue.enqueue("jobs.examples:flaky", 3))
    assert (record.state, record.result) == ("succeeded", 3)


@pytest.mark.parametrize("delay", [0, 0.5])
def test_a_release_runs_when_due_not_at_the_next_poll(queue, delay):
    record = ended(queue, queue.enqueue("jobs.examples:release_once", delay, _tries=2))
    assert (record.state, record.result) == ("succeeded", 2)
