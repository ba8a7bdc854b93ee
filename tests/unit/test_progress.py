"""The Pool's progress line: what it says, and that it stays silent off a terminal."""

from __future__ import annotations

import os
import select
import pty

from runtime.embedded.progress import ProgressLine, describe


def test_a_known_total_shows_a_bar_percent_and_eta():
    line = describe(250, 3, 10, 1000, 50.0)
    assert line.startswith("[#####---------------] 250/1,000 25%")
    assert "3 failed" in line and "10 skipped" in line and "50/s" in line and "ETA 15s" in line


def test_an_unknown_total_shows_the_count_and_rate_only():
    line = describe(1234, 0, 0, None, 99.6)
    assert line == "1,234 done  100/s"


def test_long_etas_read_as_minutes_and_hours():
    assert "ETA 2m05s" in describe(0, 0, 0, 125, 1.0)
    assert "ETA 2h00m" in describe(0, 0, 0, 7200, 1.0)


def test_nothing_is_drawn_when_the_stream_is_not_a_terminal():
    read, write = os.pipe()
    try:
        line = ProgressLine(write)
        line.update(1.0, 1, 0, 0, 10, force=True)
        line.finish(2.0, 10, 0, 0, 10)
        os.set_blocking(read, False)
        try:
            assert os.read(read, 100) == b""
        except BlockingIOError:
            pass  # nothing written at all
    finally:
        os.close(read)
        os.close(write)


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ended():
    master, slave = pty.openpty()
    try:
        line = ProgressLine(slave)
        line.update(1.0, 5, 1, 0, 10, force=True)
        line.finish(2.0, 10, 1, 0, 10)
        text = ""
        while not text.endswith("\r\n") and select.select([master], [], [], 10)[0]:
            text += os.read(master, 4096).decode()  # a pty may hand the bytes over in parts
    finally:
        os.close(master)
        os.close(slave)
    assert "\r\x1b[K[##########----------] 5/10 50%" in text
    assert "10/10 100%" in text and text.endswith("\r\n")
