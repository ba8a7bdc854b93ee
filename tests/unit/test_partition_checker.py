"""The partition checker on hand-made histories: it passes a clean one and names each breach,
so a partition run it passes can be trusted."""

from __future__ import annotations

import pytest

from jobs.partitions import TICK, line
from tests.chaos.partition_checker import HUNG_DATABASE, Run, Window, check, parse_line, read_runs

MARGIN, SLACK = 0.5, 1.0
CUT_A = Window("cut", frozenset({"host-a"}), 100.0, 110.0)


def run(job_id, host, start, end, attempt=1, ended=True, pid=1):
    return Run(job_id, attempt, host, pid, start, end, ended)


def checked(runs, windows=(CUT_A,), enqueued=None, states=None):
    enqueued = sorted({r.job_id for r in runs}) if enqueued is None else enqueued
    states = {job_id: "succeeded" for job_id in enqueued} if states is None else states
    return check(enqueued, states, runs, list(windows), MARGIN, SLACK)


def test_a_clean_history_passes():
    report = checked([run(1, "host-a", 10, 11), run(2, "host-b", 10, 11), run(3, "host-a", 50, 52)])
    assert report.problems() == []
    assert report.figures() == {"jobs": 3, "runs": 3, "partitions": 1, "lost": 0, "unexpected": 0,
                                "duplicated": 0, "unexplained_duplicates": 0, "overlaps": 0,
                                "max_overlap_s": 0.0}


@pytest.mark.parametrize("state", ["pending", "running", "failed", "cancelled", None])
def test_a_job_that_did_not_succeed_is_lost(state):
    report = checked([run(1, "host-a", 10, 11), run(2, "host-a", 12, 13)],
                     states={1: "succeeded", 2: state})
    assert report.lost == [2]
    assert "lost jobs" in report.problems()[0]


def test_a_succeeded_job_with_no_run_logged_is_lost():
    report = checked([run(1, "host-a", 10, 11)], enqueued=[1, 2])
    assert report.lost == [2]


def test_a_run_of_a_job_never_enqueued_is_unexpected():
    report = checked([run(1, "host-a", 10, 11), run(99, "host-b", 10, 11)], enqueued=[1])
    assert report.unexpected == [99]
    assert any("unexpected" in problem for problem in report.problems())


def test_runs_overlapping_beyond_the_margin_are_named_with_their_hosts():
    report = checked([run(1, "host-a", 100, 108), run(1, "host-b", 105, 106, attempt=2)])
    assert report.overlaps == [(1, "host-a", "host-b", 1.0)]
    assert report.max_overlap == 1.0
    assert any("overlapping for more than 0.5 s" in problem for problem in report.problems())


def test_an_overlap_within_the_margin_is_tolerated_but_measured():
    report = checked([run(1, "host-a", 100, 104.4), run(1, "host-b", 104, 106, attempt=2)])
    assert report.overlaps == []
    assert report.max_overlap == pytest.approx(0.4)
    assert report.problems() == []


def test_two_runs_on_one_host_overlapping_count_too():
    report = checked([run(1, "host-a", 100, 108), run(1, "host-a", 101, 102, attempt=2, pid=2)])
    assert [overlap[:3] for overlap in report.overlaps] == [(1, "host-a", "host-a")]


def test_a_duplicate_with_a_run_cut_off_by_a_partition_is_explained():
    report = checked([run(1, "host-a", 99, 99.5), run(1, "host-b", 105, 106, attempt=2)])
    assert report.duplicated == 1
    assert report.problems() == []


def test_a_duplicate_whose_runs_were_all_far_from_a_partition_is_unexplained():
    report = checked([run(1, "host-a", 10, 11), run(1, "host-b", 20, 21, attempt=2)])
    assert report.unexplained == [1]
    assert any("no run cut off by a partition" in problem for problem in report.problems())


def test_a_duplicate_explained_only_by_a_host_the_partition_did_not_cut_is_unexplained():
    # host-b ran it during host-a's cut: host-b kept its database, so it had no reason to run twice
    report = checked([run(1, "host-b", 101, 102), run(1, "host-b", 103, 104, attempt=2, pid=2)])
    assert report.unexplained == [1]


def test_slack_widens_each_window_at_both_ends_and_no_further():
    before, after = CUT_A.start - SLACK, CUT_A.end + SLACK
    assert checked([run(1, "host-a", before - 1, before), run(1, "host-b", 120, 121, attempt=2)]).unexplained == []
    assert checked([run(1, "host-a", after, after + 1), run(1, "host-b", 120, 121, attempt=2)]).unexplained == []
    assert checked([run(1, "host-a", before - 1, before - 0.01),
                    run(1, "host-b", 120, 121, attempt=2)]).unexplained == [1]
    assert checked([run(1, "host-a", after + 0.01, after + 1),
                    run(1, "host-b", 120, 121, attempt=2)]).unexplained == [1]


def test_a_hung_database_cuts_off_every_host_it_names():
    hung = Window(HUNG_DATABASE, frozenset({"host-a", "host-b"}), 200, 205)
    report = checked([run(1, "host-b", 201, 202), run(1, "host-a", 210, 211, attempt=2)], windows=[hung])
    assert report.problems() == []


def test_the_logs_become_runs_and_an_unended_run_ends_a_tick_after_its_last_line(tmp_path):
    (tmp_path / "runs-host-a.log").write_text(
        line("start", 1, 1, "host-a", 10, 100.0) + line("start", 2, 1, "host-a", 11, 100.5)
        + line("tick", 1, 1, "host-a", 10, 100.1) + line("tick", 1, 1, "host-a", 10, 100.2)
        + line("end", 2, 1, "host-a", 11, 100.6))
    (tmp_path / "runs-host-b.log").write_text(line("start", 1, 2, "host-b", 20, 104.0)
                                              + line("end", 1, 2, "host-b", 20, 105.0))
    runs = read_runs(tmp_path)
    assert runs == [Run(1, 1, "host-a", 10, 100.0, 100.2 + TICK, False), Run(2, 1, "host-a", 11, 100.5, 100.6, True),
                    Run(1, 2, "host-b", 20, 104.0, 105.0, True)]


@pytest.mark.parametrize("text", [
    "start 1 1 host-a 10",  # torn
    "start 1 1 host-a 10 not-a-time",
    "tick 1 1 host-a 10 100.0",  # no start before it
    "end 5 1 host-a 10 100.0",
])
def test_a_torn_or_out_of_order_line_is_refused(text):
    with pytest.raises(ValueError, match="here:3"):
        parse_line(text, "here:3", {})


def test_a_line_after_the_end_of_its_run_is_refused():
    runs: dict = {}
    parse_line(line("start", 1, 1, "h", 1, 1.0), "x:1", runs)
    parse_line(line("end", 1, 1, "h", 1, 2.0), "x:2", runs)
    with pytest.raises(ValueError, match="x:3: a 'tick' line out of order"):
        parse_line(line("tick", 1, 1, "h", 1, 3.0), "x:3", runs)
