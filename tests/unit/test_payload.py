"""What may be stored as job arguments and results, and the errors for what may not."""

import math

import pytest
from hypothesis import given, strategies as st

from runtime.errors import PayloadError
from runtime.payload import MAX_PAYLOAD, dump_payload, dump_result, load


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
