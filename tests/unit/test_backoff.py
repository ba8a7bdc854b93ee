"""Backoff policies: validation, normalization and delays (runtime.backoff)."""

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.backoff import backoff_delay, check_backoff, exponential


@pytest.mark.parametrize("value", [0, 5, 2.5, 10**6])
def test_a_number_is_a_constant_delay(value):
    assert check_backoff(value) == value
    for attempt in (1, 2, 50):
        assert backoff_delay(check_backoff(value), attempt) == float(value)


def test_a_list_gives_one_delay_per_attempt_and_repeats_the_last():
    policy = check_backoff([10, 60, 300])
    assert policy == [10, 60, 300] and isinstance(policy, list)
    assert [backoff_delay(policy, n) for n in (1, 2, 3, 4, 1000)] == [10, 60, 300, 300, 300]


def test_attempt_below_one_counts_as_the_first():
    assert backoff_delay([5, 7], 0) == 5
    assert backoff_delay([5, 7], -3) == 5


def test_a_table_gets_its_defaults_filled_in():
    assert check_backoff({"base": 1}) == {"base": 1, "factor": 2, "max": 3600, "jitter": 0.5}
    assert exponential() == {"base": 1, "factor": 2, "max": 3600, "jitter": 0.5}
    assert exponential(base=5, max=60, jitter=0) == {"base": 5, "factor": 2, "max": 60, "jitter": 0}


def test_normalized_policies_are_json():
    for value in (3, [1, 2.5], {"base": 0.5, "jitter": 0}):
        policy = check_backoff(value)
        assert json.loads(json.dumps(policy)) == policy


def test_exponential_doubles_up_to_max_without_jitter():
    policy = exponential(base=1, factor=2, max=300, jitter=0)
    delays = [backoff_delay(policy, n) for n in range(1, 12)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


@pytest.mark.parametrize("attempt", [1075, 10**6, 10**30, 10**400])
def test_exponential_never_overflows(attempt):
    assert backoff_delay(exponential(base=1, factor=2, max=300, jitter=0), attempt) == 300
    assert backoff_delay(exponential(base=1e-300, factor=1e10, max=1e300, jitter=0), attempt) == 1e300


def test_a_tiny_base_with_a_huge_factor_does_not_overflow():
    policy = exponential(base=1e-300, factor=1e10, max=1e300, jitter=0)
    assert backoff_delay(policy, 50) == 1e300  # 1e-300 * 1e490 is past the float range


def test_jitter_shortens_the_delay_by_at_most_its_fraction():
    policy = exponential(base=100, factor=1, max=1000, jitter=0.5)
    rng = random.Random(7)
    delays = [backoff_delay(policy, 3, rng) for _ in range(200)]
    assert all(50 <= d <= 100 for d in delays)
    assert len(set(delays)) > 100
    assert backoff_delay(policy, 3, random.Random(1)) == backoff_delay(policy, 3, random.Random(1))


@pytest.mark.parametrize(
    "value, fragment",
    [
        (True, "got true"),
        (-1, "got -1"),
        (math.inf, "got inf"),
        (math.nan, "got nan"),
        (10**400, "got 1000"),
        ("10", 'got "10"'),
        (None, "got null"),
        ([], "empty list"),
        ([1, -1], "item 2 must be a number of seconds >= 0, got -1"),
        ([1, False], "item 2"),
        ({"bse": 1}, 'unknown key "bse", did you mean "base"?'),
        ({"base": 1, "zzz": 1}, "valid keys: base, factor, max, jitter"),
        ({"factor": 2}, 'needs "base"'),
        ({"base": 0}, "base must be a number of seconds > 0, got 0"),
        ({"base": 1, "factor": 0.5}, "factor must be a number >= 1, got 0.5"),
        ({"base": 1, "max": 0}, "max must be"),
        ({"base": 1, "jitter": 1.5}, "jitter must be a number from 0 to 1, got 1.5"),
        ({"base": 1, "jitter": True}, "jitter must be"),
        ((1, 2), "got [1, 2]"),
    ],
)
def test_bad_policies_say_what_a_backoff_must_be(value, fragment):
    with pytest.raises(ValueError) as info:
        check_backoff(value)
    message = str(info.value)
    assert message.startswith("backoff ")
    assert fragment in message
    assert "\n" not in message


seconds = st.one_of(st.integers(0, 10**9), st.floats(0, 1e12, allow_nan=False, allow_infinity=False))
policies = st.one_of(
    seconds,
    st.lists(seconds, min_size=1, max_size=8),
    st.fixed_dictionaries(
        {"base": st.floats(1e-6, 1e6)},
        optional={
            "factor": st.floats(1, 1e6),
            "max": st.floats(1e-6, 1e12),
            "jitter": st.floats(0, 1),
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(policies, st.integers(1, 10**6), st.randoms(use_true_random=False))
def test_delays_are_finite_and_bounded(value, attempt, rng):
    policy = check_backoff(value)
    delay = backoff_delay(policy, attempt, rng)
    assert isinstance(delay, float) and math.isfinite(delay) and delay >= 0
    if isinstance(policy, dict):
        assert delay <= policy["max"]
    elif isinstance(policy, list):
        assert delay in policy
    else:
        assert delay == policy


def test_a_backoff_past_64_bits_becomes_a_float_that_storage_can_carry(tmp_path):
    # Found by hypothesis: an int of 2**64 passed the check, then failed to encode as a
    # TypeError from orjson inside enqueue, instead of being stored.
    from runtime import connect

    assert check_backoff(2**64) == float(2**64)
    assert check_backoff([1, 2**70]) == [1, float(2**70)]
    assert check_backoff(5) == 5 and isinstance(check_backoff(5), int)
    with connect(f"sqlite:///{tmp_path}/q.db") as q:
        job_id = q.enqueue("jobs.examples:noop", _backoff=2**64)
        assert q.status(job_id).state == "pending"
