"""Property: whatever mix of calls a map gets, each call ends exactly once, in place, as it should.

No outcome here depends on how fast the machine is. The mixes run without a timeout (a Pool
has one timeout for all its calls, so a finite one could kill a slow normal call); the call
the pool must kill while it runs grows past memory_limit_mb, which no other call comes near.
Timeouts have their own test, where every call hangs: none of them could end in time.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import JobFailed, Pool, release
from runtime.workers import retry_rules

EXPECTED = {"raise": "error", "segfault": "signal", "exit": "crash", "hog": "memory", "release": "error"}
MEMORY_LIMIT_MB = 200  # a worker running a normal call owns a few MiB; a hog owns twice this


def behave(step):
    index, how = step
    if how == "raise":
        raise ValueError(f"call {index} raised")
    if how == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "exit":
        os._exit(1)
    if how == "hog":  # grows past the memory limit and stays there: only the pool ends it
        block = bytearray(2 * MEMORY_LIMIT_MB << 20)
        for page in range(0, len(block), 4096):  # owned only once touched
            block[page] = 1
        time.sleep(3600)
    if how == "release":  # every time: it uses up its tries, then fails
        release(0)
    return index * 2


calls = st.lists(st.sampled_from(["ok"] * 12 + ["raise", "segfault", "exit", "release"]), max_size=40)


@st.composite
def plans(draw):
    plan = draw(calls)
    if draw(st.integers(0, 3)) == 0:  # at most one hog: each holds 400 MiB until it is killed
        plan.insert(draw(st.integers(0, len(plan))), "hog")
    return plan


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), chunksize=st.sampled_from([None, 1, 3, 16]), tries=st.integers(1, 2),
       ordered=st.booleans())
def test_every_call_ends_once_with_its_own_outcome(plan, chunksize, tries, ordered):
    steps = list(enumerate(plan))
    with Pool(2, memory_limit_mb=MEMORY_LIMIT_MB, tries=tries, backoff=0, errors="return") as pool:
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


def hang(_):
    time.sleep(3600)


@pytest.mark.parametrize("chunksize, tries", [(1, 1), (1, 2), (3, 1), (3, 2)])
def test_hung_calls_each_end_once_as_a_timeout(chunksize, tries):
    """Every call hangs, so every timeout is deserved however slow the machine: a chunk that
    times out runs again one call at a time, and each call uses up its tries, then fails."""
    with Pool(2, timeout=0.3, tries=tries, backoff=0, errors="return") as pool:
        results = list(pool.map(hang, range(3), chunksize=chunksize))
        stats = pool.stats
    assert [(r.reason, r.attempts) for r in results] == [("timeout", tries)] * 3, results
    assert all("timed out after 0.3 s" in r.error for r in results), results
    assert stats["failed"] == 3 and stats["succeeded"] == 0
    assert stats["restarts"]["timeout"] >= 3 * tries
    assert not pool._loop.pool.workers
