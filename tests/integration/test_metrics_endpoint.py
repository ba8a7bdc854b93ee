"""The Prometheus endpoint served from the supervisor's own event loop, end to end."""

from __future__ import annotations

import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from runtime import connect
from tests.conftest import END_STATES, wait_for, write_config


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(response.read().decode()) for s in family.samples}


def test_metrics_endpoint_counts_jobs_workers_and_restarts(tmp_path, start_supervisor):
    config = write_config(tmp_path, pools={"default": {"workers": 2}})
    config.write_text(config.read_text() + '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    supervisor = start_supervisor(config)
    port = int(wait_for(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/", supervisor.output()),
                        what="the metrics address").group(1))
    url = f"http://127.0.0.1:{port}/metrics"
    with connect(config=str(config)) as q:
        ids = q.enqueue_many([("jobs.examples:add", (1, 2))] * 5 + [("jobs.examples:busy_loop", (), {},
                                                                    {"_timeout": 0.3})])
        for job_id in ids:
            wait_for(lambda: q.status(job_id).state in END_STATES, what="jobs to end")
    samples = wait_for(lambda: (m := scrape(url)) and m.get(
        ("jobrt_workers", (("pool", "default"), ("state", "idle")))) == 2 and m, what="two idle workers")
    assert samples[("jobrt_jobs_total", (("outcome", "succeeded"), ("queue", "default")))] == 5
    assert samples[("jobrt_jobs_total", (("outcome", "timeout"), ("queue", "default")))] == 1
    assert samples[("jobrt_worker_restarts_total", (("pool", "default"), ("reason", "timeout")))] == 1
    assert samples[("jobrt_job_duration_seconds_count", (("queue", "default"),))] == 6
    assert any(name == "jobrt_storage_round_trip_seconds_count" for name, _ in samples)
    # Depths are read at each heartbeat: wait for one taken after the jobs ended (an
    # earlier one shows them pending, or not yet enqueued).
    def depth(m, state):
        return m.get(("jobrt_queue_jobs", (("queue", "default"), ("state", state))))
    ended = [0, 0, 1]  # pending, running, failed
    wait_for(lambda: (m := scrape(url)) and [depth(m, s) for s in ("pending", "running", "failed")] == ended,
             what="queue depths of 0 pending, 0 running and 1 failed")
