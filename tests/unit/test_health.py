"""`jobrt health`'s judgement, without storage: counts (and heartbeats) in, status and reasons out."""

from runtime.cli.health import Counts, Stranded, evaluate, stranded, summary
from runtime.config.load import config_from_dict
from runtime.storage.base import SupervisorRow


def judge(counts: Counts, **thresholds):
    return evaluate(config_from_dict({"health": thresholds}).health, counts)


def test_each_check_is_healthy_below_warning_then_warning_then_critical():
    assert judge(Counts(2, 999, 299.9, 99)).status == "healthy"
    report = judge(Counts(2, 1000, 300.0, 100))
    assert (report.status, report.exit_status) == ("warning", 1)
    assert [c["status"] for c in report.checks.values()] == ["healthy", "warning", "warning",
                                                              "warning", "healthy", "healthy"]
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


# -- pending jobs no live supervisor would run ------------------------------------------

def supervisor(pools=None, jobs=None, owner="s1"):
    info = {"workers": []}
    if pools is not None:
        info["pools"] = {name: {"queues": queues, "workers": 2} for name, queues in pools.items()}
    if jobs is not None:
        info["jobs"] = jobs
    return SupervisorRow(owner, "host", 1, 0.0, 100.0, info)


PENDING = [("default", "jobs.examples:echo", 4), ("emails", "__main__:send_email", 3),
           ("emails", "jobs.examples:echo", 1), ("low", "jobs.other:x", 2)]


def test_stranded_jobs_are_those_of_queues_no_pool_serves_and_names_no_supervisor_registers():
    rows = [supervisor({"default": ["high", "default"]}, ["jobs.examples:echo"]),
            supervisor({"batch": ["low"]}, ["jobs.examples:add"], owner="s2")]
    assert stranded(rows, PENDING) == [
        Stranded("queue", "emails", 4),
        Stranded("job", "__main__:send_email", 3), Stranded("job", "jobs.other:x", 2)]
    assert [s.message() for s in stranded(rows, PENDING)] == [
        "queue emails: 4 pending jobs, but no live pool serves it",
        "job __main__:send_email: 3 pending, no live supervisor registers it",
        "job jobs.other:x: 2 pending, no live supervisor registers it"]
    assert Stranded("job", "a:b", 1).to_dict() == {
        "kind": "job", "name": "a:b", "pending": 1,
        "message": "job a:b: 1 pending, no live supervisor registers it"}
    everything = [supervisor({"p": ["default", "emails", "low"]},
                             ["jobs.examples:echo", "__main__:send_email", "jobs.other:x"])]
    assert stranded(everything, PENDING) == []
    assert stranded(rows, []) == []


def test_stranded_is_not_judged_without_a_live_supervisor_or_what_it_serves():
    assert stranded([], PENDING) is None  # the workers check says nothing runs
    # A heartbeat without "pools" or "jobs" (an older jobrt) may serve anything.
    assert stranded([supervisor(None, ["jobs.examples:echo"]),
                     supervisor({"default": ["default"]}, None, owner="s2")], PENDING) == []
    assert stranded([supervisor({"default": ["default"]}, None)], PENDING) == [
        Stranded("queue", "emails", 4), Stranded("queue", "low", 2)]


def test_stranded_jobs_are_a_warning_naming_queues_and_jobs_with_counts():
    found = [Stranded("queue", "emails", 4), Stranded("queue", "mail", 1),
             Stranded("job", "__main__:send_email", 3)]
    report = judge(Counts(2, 0, None, 0, found))
    assert (report.status, report.exit_status) == ("warning", 1)
    assert report.reasons == [
        "warning: 5 pending jobs in queues no live pool serves: emails (4), mail (1)",
        "warning: 3 pending jobs whose name no live supervisor registers: __main__:send_email (3)"]
    assert report.checks["unserved_queues"] == {"status": "warning", "value": 5, "warning": 1,
                                                "critical": 0, "queues": {"emails": 4, "mail": 1}}
    assert report.checks["unregistered_jobs"] == {
        "status": "warning", "value": 3, "warning": 1, "critical": 0,
        "jobs": {"__main__:send_email": 3}}
    # Worse checks come first; a critical one stays the status.
    report = judge(Counts(2, 10000, None, 0, found[2:]))
    assert report.status == "critical" and report.reasons == [
        "critical: 10000 due jobs waiting (critical at 10000)",
        "warning: 3 pending jobs whose name no live supervisor registers: __main__:send_email (3)"]


def test_nothing_stranded_is_healthy_and_not_judged_is_no_second_report():
    report = judge(Counts(2, 0, None, 0, []))
    assert report.status == "healthy" and report.checks["unserved_queues"]["value"] == 0
    report = judge(Counts(0, 0, None, 0, None))  # no live supervisor: one reason, not three
    assert report.reasons == ["critical: no live workers: is `jobrt start` running?"]
    assert report.checks["unserved_queues"] == {"status": "healthy", "value": None, "warning": 1,
                                                "critical": 0, "queues": None}
    assert report.checks["unregistered_jobs"]["jobs"] is None


def test_a_reason_names_ten_queues_and_counts_the_rest():
    found = [Stranded("queue", f"q{n:02}", 1) for n in range(12)]
    report = judge(Counts(2, 0, None, 0, found))
    assert report.reasons == ["warning: 12 pending jobs in queues no live pool serves: "
                              + ", ".join(f"q{n:02} (1)" for n in range(10)) + " and 2 more"]
    assert len(report.checks["unserved_queues"]["queues"]) == 12
