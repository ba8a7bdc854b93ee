"""sd_notify against a real datagram socket that nobody reads, as a busy or stuck
service manager would leave it: the sender must give up, never hang."""

from __future__ import annotations

import socket
import threading

from runtime.supervisor import sd_notify


def unread_socket(tmp_path, monkeypatch) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    receiver.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    return receiver


def test_notify_delivers_to_the_socket(tmp_path, monkeypatch):
    with unread_socket(tmp_path, monkeypatch) as receiver:
        assert sd_notify.notify("READY=1", sd_notify.STATE_WAIT)
        assert receiver.recv(4096) == b"READY=1"


def test_notify_gives_up_on_a_full_queue_instead_of_blocking(tmp_path, monkeypatch):
    with unread_socket(tmp_path, monkeypatch) as receiver:
        sent: list[bool] = []

        def flood():
            # More than any max_dgram_qlen default (10 here, 512 on many distributions).
            sent.extend(sd_notify.notify(f"STATUS={n}") for n in range(2000))
            sent.append(sd_notify.notify("STOPPING=1", 0.01))

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        sender.join(60)
        blocked = sender.is_alive()
        receiver.setblocking(False)
        try:
            while receiver.recv(4096):  # drain: a blocked sender goes on and ends
                pass
        except BlockingIOError:
            pass
        assert not blocked, "notify blocked on a full queue"
        assert sent[0] and not sent[-1]
        assert sent.count(False) > 1  # dropped, not waited for


def test_notify_without_systemd_sends_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify.notify("READY=1") is False


def test_the_watchdog_interval_is_half_of_watchdog_usec_and_off_for_anything_else(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    for value, interval in (("200000", 0.1), ("0", 0.0), ("", 0.0), ("-5", 0.0), ("1e6", 0.0),
                            ("²", 0.0)):  # a digit to str.isdigit(), not to int()
        monkeypatch.setenv("WATCHDOG_USEC", value)
        assert sd_notify.watchdog_interval() == interval, value
