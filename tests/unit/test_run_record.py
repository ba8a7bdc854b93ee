"""The record of a resumable Pool run, on a real SQLite file."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import decimal
import enum
import hashlib
import math
import os
import sqlite3
import time
import uuid
from pathlib import Path

import numpy
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.embedded.batches import CALL_ARGS, CALL_ONE, CALL_STAR
from runtime.embedded.record import RunRecord, call_key
from runtime.errors import JobrtError, PayloadError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=10,
)


@dataclasses.dataclass
class Point:
    x: int
    y: int


def key_of(mode, item, task="m:f"):
    return RunRecord.key(task, call_key(mode, item)[0])


@given(item=json_values)
def test_a_call_has_one_key_whether_submitted_or_mapped(item):
    mapped = call_key(CALL_ONE, item)
    assert mapped == call_key(CALL_ARGS, ((item,), {})) == call_key(CALL_STAR, (item,))
    assert RunRecord.key("m:f", mapped[0]) != RunRecord.key("m:g", mapped[0])


def test_keyword_order_does_not_change_the_key_and_a_path_is_not_its_text():
    assert call_key(CALL_ARGS, ((), {"a": 1, "b": 2})) == call_key(CALL_ARGS, ((), {"b": 2, "a": 1}))
    path, text = call_key(CALL_ONE, Path("/x/y")), call_key(CALL_ONE, "/x/y")
    assert path[1] == text[1] == b'[["/x/y"],{}]'  # shown alike in the record...
    assert path[0] != text[0]  # ...but keyed apart


def test_arguments_are_recorded_readably_and_plain_ones_are_their_own_key():
    typed, readable = call_key(CALL_ARGS, ((1, "a", None, 2.5, True), {"k": "v"}))
    assert typed == readable == b'[[1,"a",null,2.5,true],{"k":"v"}]'
    typed, readable = call_key(CALL_ARGS, (((1, 2), {3: b"x"}, {"s"}), {}))
    assert orjson.loads(readable) == [[[1, 2], {"3": "x"}, ["s"]], {}]
    assert typed != readable


@pytest.mark.parametrize("value, named", [
    (object(), "argument 2 is of type object"),
    ([1, object()], "argument 2 (of type list) holds a value of type object"),
    (collections.OrderedDict(a=1), "argument 2 is of type collections.OrderedDict"),
    (Point(1, 2), "argument 2 is of type test_run_record.Point"),
    (numpy.array([object()]), "argument 2 is of type numpy.ndarray"),
])
def test_arguments_that_cannot_be_keyed_are_refused_by_name_with_what_to_pass(value, named):
    with pytest.raises(PayloadError, match="cannot be keyed faithfully") as caught:
        call_key(CALL_ARGS, ((1, value), {}))
    assert named in str(caught.value) and "pass " in str(caught.value)
    with pytest.raises(PayloadError, match="keyword argument 'k'"):
        call_key(CALL_ARGS, ((), {"k": value}))


def test_an_argument_that_contains_itself_is_refused():
    loop = []
    loop.append(loop)
    with pytest.raises(PayloadError, match="contain themselves"):
        call_key(CALL_ONE, loop)


class Colour(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


Pair = collections.namedtuple("Pair", "a b")


@pytest.mark.parametrize("group", [
    [numpy.array([1, 2]), numpy.array([[1, 2]]), numpy.array([1, 2], dtype=numpy.int32), numpy.array([1.0, 2.0]),
     [1, 2], numpy.int64(1), numpy.float64(1.0), 1, 1.0],
    [Colour.RED, Level.LOW, 1, "RED", Pair(1, 2), (1, 2)],
    ["\udcff", b"\xff", "\xff", ["\udcff"], {"\udcff": 1}, {"\udcff"}, Path("\udcff")],
    [datetime.date(2020, 1, 2), datetime.datetime(2020, 1, 2), "2020-01-02", uuid.UUID(int=7), str(uuid.UUID(int=7)),
     decimal.Decimal("1.5"), 1.5, "1.5", 1 + 2j, (1.0, 2.0), datetime.timedelta(1), datetime.time(1)],
])
def test_values_beyond_json_are_keyed_apart_from_their_look_alikes(group):
    keys = [key_of(CALL_ONE, value) for value in group]
    assert len(set(keys)) == len(group)
    assert keys == [key_of(CALL_ARGS, ((value,), {})) for value in group]  # and stably


# -- key(a) == key(b) exactly when a and b are equal and of the same types, all the way down --

scalars = (st.none() | st.booleans() | st.integers() | st.integers(2**63 - 2, 2**64 + 2).map(lambda n: n * (-1) ** n)
           | st.floats() | st.sampled_from([0.0, -0.0, 1.0, 1e16, float("nan"), float("inf")])
           | st.text(st.characters(codec=None, exclude_categories=()), max_size=4)
           | st.binary(max_size=4)
           | st.builds(Path, st.text(alphabet="ab/.", max_size=4)))
hashables = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3).map(tuple)
                         | st.frozensets(inner, max_size=3), max_leaves=6)
values = st.recursive(
    scalars | hashables,
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.integers(-3, 3) | st.text(max_size=2) | st.booleans(), inner, max_size=3)
    | st.sets(hashables, max_size=3) | st.frozensets(hashables, max_size=3),
    max_leaves=10)


def same(a, b) -> bool:
    """Equal, with the same types all the way down (and NaN the same as NaN)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(any(same(k, j) and same(v, b[j]) for j in b) for k, v in a.items())
    if type(a) in (set, frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    return a == b


@st.composite
def look_alike(draw, value):
    """`value` with some of its parts swapped for values of other types that JSON or == confuse."""
    if not draw(st.integers(0, 3)):
        return value
    kind = type(value)
    if kind is str:
        return draw(st.sampled_from([value.encode("utf-8", "surrogatepass"), Path(value or "."), [value]]))
    if kind is bytes:
        return draw(st.sampled_from([value.decode("latin-1"), bytearray(value), (value,)]))
    if kind is bool:
        return draw(st.sampled_from([int(value), float(value), str(value).lower()]))
    if kind is int:
        options = [str(value), [value]] + ([float(value)] if abs(value) < 2**53 else [])
        return draw(st.sampled_from(options + ([bool(value)] if value in (0, 1) else [])))
    if kind is float:
        options = [-value, str(value), None] + ([int(value)] if value == value and abs(value) < 2**53 else [])
        return draw(st.sampled_from(options))
    if isinstance(value, Path):
        return os.fspath(value)
    if value is None:
        return draw(st.sampled_from([float("nan"), 0, "", [], False]))
    if kind in (list, tuple):
        parts = [draw(look_alike(item)) for item in value]
        return draw(st.sampled_from([parts, tuple(parts)])) if draw(st.booleans()) else kind(parts)
    if kind is dict:
        swapped = {}
        for key, item in value.items():
            new = str(key) if type(key) is int else int(key) if type(key) is str and key.isascii() and key.isdigit() else key
            swapped[draw(st.sampled_from([key, new]))] = draw(look_alike(item))
        return swapped
    if kind in (set, frozenset):
        other = frozenset if kind is set else set
        return draw(st.sampled_from([other(value), sorted(value, key=repr), kind(value)]))
    return value


@st.composite
def argument_pairs(draw):
    first = tuple(draw(st.lists(values, max_size=3)))
    how = draw(st.sampled_from(["copy", "look-alike", "other"]))
    if how == "copy":
        second = copy.deepcopy(first)
    elif how == "look-alike":
        second = tuple(draw(look_alike(item)) for item in first)
    else:
        second = tuple(draw(st.lists(values, max_size=3)))
    return first, second


@settings(max_examples=600, deadline=None)
@given(pair=argument_pairs())
def test_keys_match_exactly_when_arguments_are_equal_with_the_same_types(pair):
    a, b = pair
    key_a, key_b = key_of(CALL_ARGS, (a, {})), key_of(CALL_ARGS, (b, {}))
    assert (key_a == key_b) == same(a, b), (a, b)
    kw_a, kw_b = key_of(CALL_ARGS, ((), {"x": a})), key_of(CALL_ARGS, ((), {"x": b}))
    assert (kw_a == kw_b) == same(a, b), (a, b)
    assert kw_a != key_a  # a keyword is not a positional argument


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(json_values, json_values, st.booleans()), max_size=20))
def test_recorded_results_come_back_after_reopening(tmp_path_factory, calls):
    path = tmp_path_factory.mktemp("run") / "run.db"
    record = RunRecord(f"sqlite:///{path}")
    expected = {}
    for args, result, ok in calls:
        typed, call = call_key(CALL_ONE, args)
        key = RunRecord.key("m:f", typed)
        if ok:
            record.succeeded(key, "m:f", call, result, 1)
            expected[key] = result
        else:
            record.failed(key, "m:f", call, "ValueError: no", "Traceback...", 2)
            expected.pop(key, None)
    record.close()
    reopened = RunRecord(str(path))
    keys = [key_of(CALL_ONE, args) for args, _, _ in calls]
    found = {key: orjson.loads(value) for key, value in reopened.lookup(keys).items()}
    reopened.close()
    assert found == expected


def test_a_result_that_is_not_json_runs_again_next_time(tmp_path):
    record = RunRecord(tmp_path / "run.db")
    typed, call = call_key(CALL_ONE, 1)
    key = RunRecord.key("m:f", typed)
    record.succeeded(key, "m:f", call, object(), 1)
    record.flush(time.monotonic(), force=True)
    assert record.lookup([key]) == {}
    record.close()


def test_one_file_serves_one_pool_at_a_time(tmp_path):
    first = RunRecord(tmp_path / "run.db")
    with pytest.raises(JobrtError, match="in use by another running pool"):
        RunRecord(tmp_path / "run.db")
    first.close()
    RunRecord(tmp_path / "run.db").close()


@pytest.mark.parametrize("url, text", [
    ("postgresql://u@h/db", "records its runs in a SQLite file"),
    ("sqlite://host/x.db", "names a host"),
])
def test_bad_storage_urls_are_refused(url, text):
    with pytest.raises(JobrtError, match=text):
        RunRecord(url)


def test_a_file_that_is_not_a_record_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database, just text " * 100)
    with pytest.raises(JobrtError, match="not a usable run record"):
        RunRecord(tmp_path / "notes.txt")


def test_a_run_skips_only_what_earlier_runs_recorded(tmp_path):
    typed, call = call_key(CALL_ONE, "twin")
    key = RunRecord.key("m:f", typed)
    first = RunRecord(tmp_path / "run.db")
    first.succeeded(key, "m:f", call, "first", 1)
    first.flush(time.monotonic(), force=True)
    assert first.lookup([key]) == {}  # its twin, later in the same run, runs too
    first.close()
    second = RunRecord(tmp_path / "run.db")
    assert second.lookup([key]) == {key: '"first"'}
    second.close()


def test_a_record_from_before_typed_keys_is_used_but_its_rows_never_match(tmp_path):
    path = tmp_path / "run.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE jobrt_pool_calls (key BLOB PRIMARY KEY, task TEXT NOT NULL, args TEXT NOT NULL, "
               "state TEXT NOT NULL, result TEXT, error TEXT, traceback TEXT, attempts INTEGER NOT NULL, "
               "finished_at REAL NOT NULL) WITHOUT ROWID")
    old_key = hashlib.blake2b(b'm:f\0[["abc"],{}]', digest_size=16).digest()  # what b"abc" was keyed as
    db.execute("INSERT INTO jobrt_pool_calls VALUES (?, 'm:f', '[[\"abc\"],{}]', 'succeeded', '\"bytes\"', "
               "NULL, NULL, 1, 0)", (old_key,))
    db.commit()
    db.close()
    record = RunRecord(path)
    typed, call = call_key(CALL_ONE, "abc")
    key = RunRecord.key("m:f", typed)
    assert key != old_key and record.lookup([key]) == {}
    record.succeeded(key, "m:f", call, "str", 1)
    record.close()
    reopened = RunRecord(path)
    assert reopened.lookup([key]) == {key: '"str"'}
    reopened.close()
