"""What may be stored as job arguments and results, and the errors for what may not."""

import math
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from runtime.errors import PayloadError
from runtime.payload import MAX_PAYLOAD, dump_payload, dump_result, load
from tests.conftest import REPO


@pytest.mark.parametrize("args,needle", [
    ((math.nan,), "NaN or Infinity"),
    (([{"x": math.inf}],), "NaN or Infinity"),
    ((2**64,), "64-bit"),
    (("\ud800",), "JSON"),
    ((object(),), "JSON"),
    (({1: 2},), "JSON"),
    (("x" * (MAX_PAYLOAD + 1),), "limit"),
])
def test_refused_with_a_message_naming_the_job(args, needle):
    with pytest.raises(PayloadError) as error:
        dump_payload("jobs.mail:send", args, {})
    assert "jobs.mail:send" in str(error.value) and needle in str(error.value)


def test_deep_nesting_is_refused():
    value = []
    for _ in range(1000):
        value = [value]
    with pytest.raises(PayloadError):
        dump_payload("j", (value,), {})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=20)


@given(st.lists(json_values, max_size=4), st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_json_arguments_round_trip(args, kwargs):
    assert load(dump_payload("j", args, kwargs)) == [args, kwargs]


def test_results():
    assert dump_result(None) == b"null"
    assert load(dump_result({"a": [1, 2.5]})) == {"a": [1, 2.5]}
    with pytest.raises(PayloadError, match="result"):
        dump_result(float("nan"))


any_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**65, 2**65) | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8)


def _outcome(args, kwargs):
    try:
        return dump_payload("jobs.mail:send", args, kwargs)
    except PayloadError as exc:
        return str(exc)


@given(st.lists(any_values, max_size=3), st.dictionaries(st.text(max_size=3), any_values, max_size=3))
def test_a_tuple_or_list_of_arguments_is_stored_as_any_other_iterable_would_be(args, kwargs):
    # Tuples and lists with a plain dict take a shorter way (dumped as they are); an
    # iterator and a dict subclass take the long one: the same bytes, the same refusals.
    class Kwargs(dict):
        pass
    reference = _outcome(iter(args), Kwargs(kwargs))
    assert _outcome(tuple(args), kwargs) == reference
    assert _outcome(list(args), kwargs) == reference


def test_many_short_arguments_kept_take_about_their_own_size():
    # orjson writes into a buffer of about 1 KiB and shrinks it; 100k such payloads kept
    # by one enqueue_many grew the process by 390 MiB. A fresh interpreter, so the test's
    # own allocations do not count: 20,000 payloads of ~20 bytes, resident growth.
    script = """
import resource
from runtime.payload import dump_payload
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kept = [dump_payload("j", (n, 1), {}) for n in range(20000)]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    grown_kib = int(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                                   text=True, cwd=REPO).stdout)
    assert grown_kib < 16 * 1024, f"20,000 short payloads grew the process by {grown_kib} KiB"
