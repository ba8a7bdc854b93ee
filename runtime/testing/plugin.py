"""The pytest plugin jobrt registers (entry point `pytest11`: jobrt): two fixtures.

    def test_signup_sends_mail(jobrt_fake):       # runtime.testing.fake_queue()
        signup("a@example.com")
        jobrt_fake.assert_enqueued(send_email, args=["a@example.com"])

    def test_signup_mail_is_sent(jobrt_eager):    # runtime.testing.eager_queue()
        signup("a@example.com")
        assert jobrt_eager.run_until_empty() == 1

`@pytest.mark.jobrt(config="supervisor.toml", run_in_worker=True)` passes its keywords
to the fixture's queue (run_in_worker: the eager one's only).
"""

from __future__ import annotations

import pytest

from runtime.testing.eager import eager_queue
from runtime.testing.fake import fake_queue


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "jobrt(config=None, run_in_worker=False): options of the "
                                       "jobrt_fake / jobrt_eager fixtures' queue")


def _options(request) -> dict:
    marker = request.node.get_closest_marker("jobrt")
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def jobrt_fake(request):
    """A runtime.testing.FakeQueue that runtime.connect() returns during the test."""
    options = _options(request)
    options.pop("run_in_worker", None)
    with fake_queue(**options) as queue:
        yield queue


@pytest.fixture
def jobrt_eager(request):
    """A runtime.testing.EagerQueue that runtime.connect() returns during the test."""
    with eager_queue(**_options(request)) as queue:
        yield queue
