"""runtime.events without processes: registration order, hooks found module by module (a
module imported anew brings only its own), a raising hook logged in one line, and what the
supervisor tells a worker about a run's end (event_relay), retry_until judged so that a
run told "final" is final whenever it ends."""

from __future__ import annotations

import sys
import types

import pytest

from runtime import events
from runtime.config.load import config_from_dict
from runtime.options import JobOptions
from runtime.storage.base import ClaimedJob
from runtime.workers import protocol, retry_rules
from runtime.workers.event_relay import EventRelay
from runtime.workers.records import Run

POOL = config_from_dict({"pools": {"default": {"tries": 3, "backoff": [10, 60]}}}).pools["default"]


def module(monkeypatch, name: str, source: str) -> types.ModuleType:
    """A module `name` imported from `source`, as a job module would be."""
    made = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, made)
    exec(compile(source, name, "exec"), vars(made))
    return made


def ours(hooks: events.Hooks, *modules) -> list[list[str]]:
    """Each event's hooks that `modules` registered, by name, in run order."""
    names = {m.__name__ for m in modules}
    return [[events.hook_name(h) for h in chosen if h.__module__ in names] for chosen in hooks]


def test_hooks_run_in_registration_order_across_modules(monkeypatch):
    first = module(monkeypatch, "evt_first", "from runtime import events\n"
                                             "@events.before_run\ndef a(e): pass\n")
    second = module(monkeypatch, "evt_second", "from runtime import events\n"
                                               "events.before_run(lambda e: None)\n"
                                               "@events.after_failure\ndef c(e): pass\n")
    exec("@events.before_run\ndef d(e): pass\n", vars(first))  # evt_first registers more later
    assert ours(events.registered(), first, second) == [
        ["evt_first:a", "evt_second:<lambda>", "evt_first:d"], [], [], ["evt_second:c"], []]


def test_a_module_imported_anew_brings_its_own_hooks_not_the_old_ones(monkeypatch):
    source = "from runtime import events\n@events.after_success\ndef seen(e): pass\n"
    old = module(monkeypatch, "evt_reloaded", source)
    new = module(monkeypatch, "evt_reloaded", source)  # what a reload's reimport does
    [hook] = [h for h in events.registered().after_success if h.__module__ == "evt_reloaded"]
    assert hook is new.seen and hook is not old.seen


def test_only_callables_register():
    with pytest.raises(TypeError, match="events.before_run registers a function"):
        events.before_run("not a function")


def test_a_raising_hook_is_logged_in_one_line_and_the_next_still_runs(capsys):
    ran = []

    def breaks(event):
        raise ValueError("two\nlines")

    def exits(event):
        sys.exit(3)

    record = events.JobEvent(events.AFTER_SUCCESS, 42, "m:f", "default", [], {}, 1, result=None)
    events.fire((breaks, exits, ran.append), record)
    assert ran == [record]
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"jobrt: event hook {__name__}:test_a_raising_hook_is_logged_in_one_line_and_the_next_still_runs"
        f".<locals>.breaks (after_success) raised for job 42: ValueError: two lines",
        f"jobrt: event hook {__name__}:test_a_raising_hook_is_logged_in_one_line_and_the_next_still_runs"
        f".<locals>.exits (after_success) raised for job 42: SystemExit: 3"]


def run(attempt, exceptions=0, **options) -> Run:
    claimed = ClaimedJob(7, "default", "j:j", b'[[1],{"k":2}]', attempt, JobOptions(**options).encode(),
                         exceptions)
    return Run(claimed, JobOptions.decode(claimed.options), 30.0)


def told(the_run: Run, claimed_at: float = 1000.0):
    EventRelay(POOL).tell([the_run], claimed_at)
    return the_run.told


def test_the_worker_is_told_what_an_exception_or_a_release_would_mean():
    assert told(run(1)) == (None, None)
    assert told(run(3)) == (" (attempt 3 of 3)",
                            f"{retry_rules.RELEASED_LAST} (attempt 3 of 3)")
    assert told(run(2, exceptions=1, tries=10, max_exceptions=2)) == (
        " (exception 2 of max_exceptions 2)", None)


def test_retry_until_is_final_only_when_even_the_least_backoff_passes_it():
    jittered = {"base": 100, "factor": 2, "max": 1000, "jitter": 0.5}  # 50 to 100 s after attempt 1
    assert told(run(1, backoff=jittered, retry_until=1049.0)) == (" (retry_until has passed)", None)
    for _ in range(50):  # whatever the jitter draws, a run that could still retry is told so
        assert told(run(1, backoff=jittered, retry_until=1051.0)) == (None, None)


def event_frames(relay: EventRelay) -> list:
    return protocol.FrameReader().feed(b"".join(relay.waiting))


def test_a_failure_the_worker_did_not_see_coming_goes_to_another_worker():
    relay = EventRelay(POOL)
    retried = run(1, retry_until=1100.0)
    relay.tell([retried], 1000.0)
    # retry_until passed while it ran: the worker ran after_exception(will_retry=True) only
    outcome = retry_rules.errored(retried.job, retried.options, POOL, "E: x", "tb", 1095.0)
    assert outcome.state == "failed"
    relay.ended(retried, outcome, protocol.ERROR)
    [(kind, header, body)] = event_frames(relay)
    assert (kind, header, body) == (protocol.EVENT, ["after_failure", 7, 1, "j:j", "default", outcome.error],
                                    b'[[1],{"k":2}]')


@pytest.mark.parametrize("status", [protocol.ERROR, protocol.FAIL, protocol.RELEASE, None])
def test_a_failure_on_the_last_try_is_sent_only_when_its_worker_was_killed(status):
    relay = EventRelay(POOL)
    last = run(3)
    relay.tell([last], 1000.0)
    outcome = retry_rules.failed(last.job, "E", 1001.0)
    relay.ended(last, outcome, status)
    assert len(event_frames(relay)) == (1 if status is None else 0)
    relay.ended(run(1), retry_rules.succeeded(run(1).job, b"null", 1001.0), None)  # not a failure
    assert len(event_frames(relay)) == (1 if status is None else 0)
