"""`jobrt health`'s judgement, without storage: counts in, status and reasons out."""

from runtime.config import config_from_dict
from runtime.health import Counts, evaluate, summary


def judge(counts: Counts, **thresholds):
    return evaluate(config_from_dict({"health": thresholds}).health, counts)


def test_each_check_is_healthy_below_warning_then_warning_then_critical():
    assert judge(Counts(2, 999, 299.9, 99)).status == "healthy"
    report = judge(Counts(2, 1000, 300.0, 100))
    assert (report.status, report.exit_status) == ("warning", 1)
    assert [c["status"] for c in report.checks.values()] == ["healthy", "warning", "warning",
                                                              "warning"]
    report = judge(Counts(2, 10000, 1800.0, 100), failed_critical=100)
    assert (report.status, report.exit_status) == ("critical", 2)
    assert report.reasons == [
        "critical: 10000 due jobs waiting (critical at 10000)",
        "critical: the oldest due job has waited 1800 s (critical at 1800 s)",
        "critical: 100 jobs in the failed-jobs store (critical at 100)",
    ]


def test_workers_count_against_fewer_than_and_critical_comes_first():
    report = judge(Counts(2, 1000, None, 0), workers_warning=3, workers_critical=1)
    assert report.reasons == ["warning: 2 live workers (warning below 3)",
                              "warning: 1000 due jobs waiting (warning at 1000)"]
    report = judge(Counts(0, 1000, None, 0))
    assert report.reasons == ["critical: no live workers: is `jobrt start` running?",
                              "warning: 1000 due jobs waiting (warning at 1000)"]


def test_zero_turns_a_check_off_and_no_due_job_is_never_old():
    report = judge(Counts(0, 10**9, 10**9, 10**9), workers_critical=0, pending_warning=0,
                   pending_critical=0, oldest_pending_warning=0, oldest_pending_critical=0,
                   failed_warning=0)
    assert (report.status, report.reasons) == ("healthy", [])
    assert judge(Counts(1, 0, None, 0)).checks["oldest_pending"]["status"] == "healthy"
    assert summary(Counts(1, 3, 2.4, 1)) == (
        "healthy: 1 live worker, 3 due jobs (the oldest waiting 2 s), 1 failed job")
