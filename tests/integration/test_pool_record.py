"""Pool(storage=...): a resumed run hands each call the result that call computed, never a look-alike's."""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import pytest

from runtime import JobFailed, Pool
from runtime.embedded import record

SAFETY = 60  # seconds a wait may take before the test fails instead of hanging

# Each group: values that JSON (or loose equality) confuses, but a function can tell apart.
LOOK_ALIKES = [
    "abc", b"abc", bytearray(b"abc"),
    frozenset([1]), [1], {1}, (1,),
    (1, 2), [1, 2], {1, 2}, frozenset([1, 2]),
    {1: "x"}, {"1": "x"}, {True: "x"}, {1.0: "x"},
    Path("p"), "p",
    1, 1.0, True, "1",
    0.0, -0.0, 0, False,
    float("nan"), None, float("inf"), "inf",
    2**64, str(2**64), float(2**64),
    [(1, 2)], [[1, 2]], ([1, 2],),
    {"a": (1,)}, {"a": [1]},
]


def show(x):
    return f"{type(x).__name__} {x!r}"


def count(path):
    """How many times it ran, on this file, ever."""
    with open(path, "a") as f:
        f.write("x\n")
    with open(path) as f:
        return len(f.readlines())


def pair(a, b=None, *, c=None):
    return show((a, b, c))


def test_each_look_alike_gets_its_own_result_on_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/run.db"
    expected = [show(value) for value in LOOK_ALIKES]
    with Pool(2, storage=url) as pool:
        assert list(pool.map(show, LOOK_ALIKES)) == expected
        assert pool.stats["skipped"] == 0
    order = list(range(len(LOOK_ALIKES)))
    random.Random(1).shuffle(order)
    with Pool(2, storage=url) as pool:
        assert list(pool.map(show, LOOK_ALIKES, chunksize=3)) == expected
        futures = {i: pool.submit(show, LOOK_ALIKES[i]) for i in order}
        assert {i: f.result(SAFETY) for i, f in futures.items()} == dict(enumerate(expected))
        assert pool.stats["skipped"] == 2 * len(LOOK_ALIKES) and pool.stats["succeeded"] == 0


def test_positional_keyword_and_types_of_arguments_are_all_part_of_the_key(tmp_path):
    url = f"sqlite:///{tmp_path}/run.db"
    calls = [((1,), {}), ((1, None), {}), ((1,), {"b": None}), ((1,), {"c": None}), ((1.0,), {}),
             (("1",), {}), ((b"1",), {"c": b"1"}), ((b"1",), {"c": "1"})]
    for run in range(2):
        with Pool(1, storage=url) as pool:
            futures = [pool.submit(pair, *args, **kwargs) for args, kwargs in calls]
            assert [f.result(SAFETY) for f in futures] == [pair(*a, **k) for a, k in calls]
            assert pool.stats["skipped"] == (0 if run == 0 else len(calls))


def test_a_call_whose_twin_ran_in_the_same_run_runs_too(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "FLUSH_EVERY", 0.0)  # the twin's record is written before the next call
    url = f"sqlite:///{tmp_path}/run.db"
    counter = tmp_path / "count"
    with Pool(1, storage=url) as pool:
        assert pool.submit(count, counter).result(SAFETY) == 1
        assert pool.submit(count, counter).result(SAFETY) == 2
        assert list(pool.map(count, [counter, counter])) == [3, 4]
        assert pool.stats["skipped"] == 0
    with Pool(1, storage=url) as pool:  # a later run: the call succeeded before, and is skipped
        assert pool.submit(count, counter).result(SAFETY) == 4
        assert pool.stats["skipped"] == 1


class Opaque:
    def __init__(self, value):
        self.value = value

    def __str__(self):
        return str(self.value)


def test_arguments_that_cannot_be_keyed_fail_only_their_call(tmp_path):
    url = f"sqlite:///{tmp_path}/run.db"
    with Pool(1, storage=url, errors="return") as pool:
        results = list(pool.map(str, [1, Opaque(2), 3]))
        nested = pool.submit(str, {"k": [Opaque(4)]}).result(SAFETY)
    assert results[0] == "1" and results[2] == "3"
    for failure in (results[1], nested):
        assert isinstance(failure, JobFailed) and failure.reason == "error"
        assert "Opaque" in failure.error and "cannot be keyed" in failure.error


def test_nan_is_one_key_and_huge_numbers_are_keyed_exactly(tmp_path):
    url = f"sqlite:///{tmp_path}/run.db"
    values = [float("nan"), -float("nan"), 2**100, 2**100 + 1, -(2**70), 1e300, 5e-324]
    for run in range(2):
        with Pool(1, storage=url) as pool:
            assert list(pool.map(show, values)) == [show(v) for v in values]
            assert pool.stats["skipped"] == (0 if run == 0 else len(values))
    assert math.isnan(values[0])


@pytest.mark.parametrize("value", [Path("a") / "b", (Path("a"), "a"), {Path("a"): 1}])
def test_paths_are_recorded_readably_and_keyed_as_paths(tmp_path, value):
    url = f"sqlite:///{tmp_path}/run.db"
    with Pool(1, storage=url) as pool:
        assert pool.submit(show, value).result(SAFETY) == show(value)
    db = sqlite3.connect(tmp_path / "run.db")
    (args,) = db.execute("SELECT args FROM jobrt_pool_calls").fetchone()
    db.close()
    assert '"a' in args  # the path shows as its text, not as an opaque encoding
