"""The supervisor's wake-ups from storage (Supervisor mixes this in): a listener on
enqueues and cancels (PostgreSQL LISTEN, or a datagram socket beside an SQLite file),
watched by the event loop; without one, pickup falls back to polling every `poll` s."""

from __future__ import annotations

import logging

from runtime.errors import StorageError

log = logging.getLogger("jobrt")


class Wakeups:
    """Uses the Supervisor's storage, config, watch_call/unwatch_fd, _wake_pools,
    _cancel_requested and _read_controls; keeps listener, listener_fd and listen_failed (their first values
    are set in Supervisor.__init__)."""

    def _listen(self) -> None:
        """Subscribe to enqueue wake-ups; without them pickup falls back to polling."""
        try:
            self.listener = self.storage.listener()
        except StorageError as exc:
            if not self.listen_failed:
                log.warning("cannot listen for new jobs (%s); polling every %g s until it works",
                            exc, self.config.poll)
            self.listen_failed = True
            return
        if self.listen_failed:
            log.info("listening for new jobs again")
            self.listen_failed = False
        self.listener_fd = self.listener.fileno()
        if self.listener_fd >= 0:
            self.watch_call(self.listener_fd, lambda _mask: self._drain_listener())

    def _drain_listener(self) -> None:
        self._wake_pools()
        self._cancel_requested()
        self._read_controls()  # `jobrt pause|resume|restart` on this host woke it
        try:
            self.listener.drain()
        except StorageError as exc:
            log.warning("lost the wake-up listener (%s); polling every %g s and reconnecting",
                        exc, self.config.poll)
            self._drop_listener()
            self.listen_failed = True

    def _drop_listener(self) -> None:
        if self.listener is not None:
            self.unwatch_fd(self.listener_fd)
            self.listener.close()
            self.listener = None
