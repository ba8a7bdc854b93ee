"""Property: whatever mix of calls a map gets, each call ends exactly once, in place, as it should."""

from __future__ import annotations

import os
import signal
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import JobFailed, Pool, release
from runtime.workers import retry_rules

EXPECTED = {"raise": "error", "segfault": "signal", "exit": "crash", "hang": "timeout", "release": "error"}


def behave(step):
    index, how = step
    if how == "raise":
        raise ValueError(f"call {index} raised")
    if how == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "exit":
        os._exit(1)
    if how == "hang":
        time.sleep(3600)
    if how == "release":  # every time: it uses up its tries, then fails
        release(0)
    return index * 2


calls = st.lists(st.sampled_from(["ok"] * 12 + ["raise", "segfault", "exit", "release"]), max_size=40)


@st.composite
def plans(draw):
    plan = draw(calls)
    if draw(st.integers(0, 3)) == 0:  # at most one hang: each costs a timeout or two
        plan.insert(draw(st.integers(0, len(plan))), "hang")
    return plan


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), chunksize=st.sampled_from([None, 1, 3, 16]), tries=st.integers(1, 2),
       ordered=st.booleans())
def test_every_call_ends_once_with_its_own_outcome(plan, chunksize, tries, ordered):
    steps = list(enumerate(plan))
    with Pool(2, timeout=0.3, tries=tries, backoff=0, errors="return") as pool:
        results = list(pool.map(behave, steps, chunksize=chunksize, ordered=ordered))
        stats = pool.stats
    assert len(results) == len(plan)
    if ordered:
        for (index, how), result in zip(steps, results):
            if how == "ok":
                assert result == index * 2
            else:
                assert isinstance(result, JobFailed) and result.reason == EXPECTED[how], (how, result)
                assert result.attempts == tries
                if how == "release":
                    assert result.error == f"{retry_rules.RELEASED_LAST} (attempt {tries} of {tries})"
    successes = sorted(r for r in results if not isinstance(r, JobFailed))
    assert successes == sorted(index * 2 for index, how in steps if how == "ok")
    reasons = sorted(r.reason for r in results if isinstance(r, JobFailed))
    assert reasons == sorted(EXPECTED[how] for how in plan if how != "ok")
    assert stats["succeeded"] == len(successes) and stats["failed"] == len(reasons)
    assert not pool._loop.pool.workers
