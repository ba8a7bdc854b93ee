"""The Python side of `jobrt pause|resume|restart`: Queue.pause, resume and restart write
the same rows the commands write (what supervisors read is tested end to end in
tests/acceptance/test_queue_controls_cli.py), and how the commands count supervisors."""

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


def test_the_cli_counts_live_supervisors_in_grammatical_english():
    from runtime.cli.queue_controls import _supervisors

    assert _supervisors(1, "follow") == "1 live supervisor follows"
    assert _supervisors(2, "replace") == "2 live supervisors replace"
