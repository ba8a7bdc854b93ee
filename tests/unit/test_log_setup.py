"""The supervisor's text log lines read exactly as logging.Formatter writes them, though
their timestamps are formatted once a second (runtime.supervisor.log_setup)."""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.supervisor.log_setup import TextFormatter

FORMAT = "%(asctime)s %(levelname)s %(message)s"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=1, max_size=20))
def test_text_lines_equal_the_standard_formatters(times):
    ours, standard = TextFormatter(FORMAT), logging.Formatter(FORMAT)
    for created in sorted(times) + times:  # the same second again, and out of order
        record = logging.LogRecord("jobrt", logging.INFO, __file__, 1, "worker %d started", (7,), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)
