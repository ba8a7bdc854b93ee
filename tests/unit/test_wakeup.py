"""Wake-ups from clients to supervisors (runtime.storage.wakeup): a client re-reads which
supervisors listen at most every REFRESH seconds, and at once after one went away."""

from __future__ import annotations

import os

from runtime.storage.wakeup import REFRESH, Waker, WakeListener


def test_a_waker_finds_listeners_at_its_next_read_and_forgets_gone_ones(tmp_path):
    key = f"{tmp_path}/jobs.db"
    waker = Waker(key)
    assert waker.wake() == 0  # nobody listens yet
    listener = WakeListener(key)
    try:
        assert waker.wake() == 0  # the table read a moment ago is trusted for REFRESH s
        waker.read_at -= REFRESH  # as if that much time had passed
        assert waker.wake() == 1
        assert os.read(listener.fileno(), 16) == b"!"
    finally:
        listener.close()
    assert waker.wake() == 0  # its socket is gone: the send fails...
    assert waker.wake() == 0 and waker.names == []  # ...and the table is read again at once
    waker.close()
