"""Tags reach jobs enqueued on their own; a batch's member or a chain's step given _tags
is refused with the item named, not stored without them."""

from __future__ import annotations

import pytest

from runtime import PayloadError, connect

TAGGED = ("jobs.examples:add", (1, 2), {}, {"_tags": ["billing"]})


@pytest.mark.parametrize("make", ["batch", "chain"])
def test_tags_on_a_workflows_jobs_are_refused_with_the_item_named(tmp_path, make):
    with connect(f"sqlite:///{tmp_path}/q.db") as q:
        with pytest.raises(PayloadError, match=rf"{make} item 1: _tags"):
            getattr(q, make)([("jobs.examples:add", (1, 2)), TAGGED])
        assert q.counts() == {}  # nothing stored
        [job_id] = q.enqueue_many([TAGGED])
        assert q.status(job_id).tags == ["billing"]
