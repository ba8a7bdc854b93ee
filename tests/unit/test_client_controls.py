"""The Python side of `jobrt pause|resume|restart`: Queue.pause, resume and restart write
the same rows the commands write (what supervisors read is tested end to end in
tests/acceptance/test_queue_controls_cli.py)."""

from __future__ import annotations

from runtime import connect


def test_pause_resume_and_restart_from_python(tmp_path):
    with connect(f"sqlite:///{tmp_path}/q.db") as q:
        assert q.pause("low", "emails", "low") == ["emails", "low"]
        assert q.pause("low") == []  # already paused
        assert sorted(q.storage.paused_queues()) == ["emails", "low"]
        assert q.resume("low", "never-paused") == ["low"]
        assert sorted(q.storage.paused_queues()) == ["emails"]
        assert (q.restart(), q.restart()) == (1, 2)
        assert q.storage.controls().restart == 2
