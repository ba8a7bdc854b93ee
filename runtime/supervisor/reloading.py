"""SIGHUP for the Supervisor: re-read the config, have a throwaway child import its job
modules, then start new pools and retire the old ones; a bad config, or modules that do
not import, change nothing and are logged. A base class of Supervisor: these methods
write only the Supervisor's own fields.
"""

from __future__ import annotations

import logging
import time

from runtime.config.load import load_config
from runtime.errors import ConfigError
from runtime.supervisor import sd_notify
from runtime.supervisor.fencing import call_timeout
from runtime.supervisor.import_check import CHECK_TIMEOUT, ImportCheck
from runtime.supervisor.ticking import check_schedules
from runtime.workers.balanced_pool import worker_pool

log = logging.getLogger("jobrt")


class Reloading:
    """The reload steps of Supervisor."""

    reload_cause = "SIGHUP"  # what started the latest reload: begins the lines it logs

    def _reload(self, now: float, cause: str = "SIGHUP") -> None:
        """Re-read the config and have a throwaway child import its job modules; once they
        import, `_apply_reload`. A bad config, or modules that do not import, change nothing.
        `cause` begins the lines logged: SIGHUP, or the files `jobrt start --reload` saw change."""
        self.reload_cause = cause
        log.info("%s: reloading the configuration and job modules", cause)
        sd_notify.notify(f"RELOADING=1\nMONOTONIC_USEC={sd_notify.monotonic_usec()}", sd_notify.STATE_WAIT)
        try:
            config = load_config(self.config.path)
            if config.storage_url != self.config.storage_url:
                raise ConfigError("cannot change on reload; restart the supervisor to move storage",
                                  config.path, "storage.url")
            for key in ("metrics_listen", "metrics_allow_remote"):
                if getattr(config, key) != getattr(self.config, key):
                    raise ConfigError("cannot change on reload; restart the supervisor to apply it",
                                      config.path, key.replace("_", ".", 1))
            # from the jobs this supervisor loaded at start (it imports no job module again)
            check_schedules(config, self.registry)
        except ConfigError as exc:
            self._reject_reload(str(exc))
            return
        if self.import_check is not None:  # a newer SIGHUP: the file may have changed again
            self._take_import_check().abandon()
        check = ImportCheck(config.modules, config.module_path, config.path, now + CHECK_TIMEOUT)
        self.import_check = check
        self.watch_call(check.child.pidfd, lambda _mask: self._import_checked(config))

    def _take_import_check(self) -> ImportCheck:
        """The running import check, no longer watched nor pending."""
        check, self.import_check = self.import_check, None
        self.unwatch_fd(check.child.pidfd)
        return check

    def _import_checked(self, config) -> None:
        check = self._take_import_check()
        error, names, events = check.verdict()
        if error is not None:
            self._reject_reload(f"its job modules do not import: {error}")
            return
        if self.source_watch is not None:  # the new code may import files the old did not
            self.source_watch.watch(check.files)
        self.job_names = names
        try:
            # the new workers import the modules anew: their hooks are those the check found
            fresh = [worker_pool(pool, self.registry, self, self.stats, config.path,
                                 self.owner, config.modules, config.module_path, events=events)
                     for pool in config.pools.values()]
        except ConfigError as exc:
            self._reject_reload(str(exc))
            return
        self._apply_reload(time.monotonic(), config, fresh)

    def _reject_reload(self, why: str) -> None:
        log.error("%s: new configuration rejected, the running one stays: %s", self.reload_cause, why)
        sd_notify.notify("READY=1\nSTATUS=reload rejected: " + why[:200], sd_notify.STATE_WAIT)

    def _apply_reload(self, now: float, config, fresh: list) -> None:
        """Start the new pools and retire the old ones: their workers take no new job, and
        the one each is running finishes (bounded by its own timeout), never cut short."""
        for pool in self.pools:
            if not pool.stopping:
                pool.retire_for_reload(now)
        self.pools = self.pools + fresh
        self.next_balance = now  # the new pools' first step, if they balance
        self.config = config
        self.ticker.use(config, self.registry)  # schedules kept by name keep their cursors
        self._use_lease(config.lease)
        # and its storage calls end within the new fence margin (at start: open_storage's)
        self.storage.call_timeout = call_timeout(config)
        # a shorter lease must be renewed before the next heartbeat the old one planned
        self.next_heartbeat = min(self.next_heartbeat, now + self.heartbeat_every)
        self.next_rescue = min(self.next_rescue, now + self.rescue_every)
        log.info("%s: configuration reloaded; replacing workers: %s; old workers finish the job "
                 "they are running (within its timeout) and exit", self.reload_cause, ", ".join(
                     f"pool {p.config.name} ({p.target} workers)" for p in fresh))
        sd_notify.notify("READY=1\nSTATUS=" + self._summary(), sd_notify.STATE_WAIT)
