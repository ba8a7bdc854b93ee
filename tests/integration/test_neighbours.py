"""A running supervisor rescues the jobs of a same-host neighbour the moment it dies, through
a pidfd on it: with a lease of 300 s (a rescue sweep every 150 s), only that explains a
rescue within the test's timeout."""

from __future__ import annotations

from runtime import connect
from tests.conftest import END_STATES, wait_for, write_config


def test_a_running_neighbour_rescues_a_killed_supervisors_jobs_at_once(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, pools={"default": {"workers": 1}}, storage={**storage, "lease": 300})
    release = tmp_path / "release"
    first = start_supervisor(config)
    with connect(config=str(config)) as q:
        job_id = q.enqueue("jobs.examples:wait_for_file", str(release))
        wait_for(lambda: q.status(job_id).state == "running", what="the job running in the first supervisor")
        second = start_supervisor(config)  # READY=1 comes after its first heartbeat: it watches the first
        first.kill()
        release.touch()
        record = wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 30, "the rescued job")
        assert (record.state, record.attempts) == ("succeeded", 2)
    assert "rescued 1 jobs of dead supervisor" in second.output()


def test_a_neighbour_that_stops_cleanly_is_forgotten_without_a_rescue(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, pools={"default": {"workers": 1}}, storage={**storage, "lease": 300})
    first = start_supervisor(config)
    second = start_supervisor(config)
    assert first.stop() == 0
    with connect(config=str(config)) as q:
        job_id = q.enqueue("jobs.examples:add", 1, 2)
        assert wait_for(lambda: (r := q.status(job_id)).state in END_STATES and r, 30).result == 3
    assert "rescued" not in second.output()
