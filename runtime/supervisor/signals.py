"""The Supervisor's signals (mixed in): the handlers only wake the loop (the wake-up fd
carries the signal number); here the loop acts on them. SIGTERM/SIGINT stop it (twice: at
once), SIGHUP reloads, SIGTTIN/SIGTTOU add or remove a worker per pool. `stop` is also
how a stop rule (`jobrt start --until-empty`, ...) ends a run."""

from __future__ import annotations

import logging
import signal

from runtime.supervisor import sd_notify

log = logging.getLogger("jobrt")


class Signals:
    """Uses the Supervisor's pools, stopping, signals, import_check, next_balance, _reload."""

    def _read_signals(self, sock) -> None:
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        self.signals.extend(data)

    def stop(self, now: float, why: str) -> None:
        """Stop claiming, return unstarted jobs, give running ones their pool's grace: on
        SIGTERM/SIGINT, and when a stop rule (`jobrt start --until-empty`, ...) is met."""
        self.stopping = True
        log.info("%s: stopping; running jobs get up to their pool's grace to finish", why)
        sd_notify.notify("STOPPING=1", sd_notify.STATE_WAIT)
        if self.import_check is not None:
            self._take_import_check().abandon()
        for pool in self.pools:
            if not pool.stopping:
                grace = pool.config.grace
                pool.begin_stop(now, grace, f"the supervisor stopped and the grace period "
                                            f"({grace:g} s) ran out")
            else:  # retired by a reload, its jobs had no deadline: now they have
                pool.hurry(now)

    def _handle_signals(self, now: float) -> None:
        signals, self.signals = self.signals, []
        for signum in signals:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    self.stop(now, signal.Signals(signum).name)
                else:
                    log.info("%s again: stopping now", signal.Signals(signum).name)
                    for pool in self.pools:
                        pool.kill_all(f"the supervisor was told again to stop ({signal.Signals(signum).name})")
            elif signum in (signal.SIGTTIN, signal.SIGTTOU) and not self.stopping:
                # one worker more or fewer per pool; a balanced pool moves its max_workers
                delta = +1 if signum == signal.SIGTTIN else -1
                log.info("%s: %s", signal.Signals(signum).name,
                         "; ".join(pool.resize(delta) for pool in self.pools if not pool.stopping))
                self.next_balance = now
            elif signum == signal.SIGHUP and not self.stopping:
                self._reload(now)
