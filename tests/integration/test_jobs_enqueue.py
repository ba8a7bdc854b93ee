"""A job enqueues into its own database from its worker, as Laravel jobs dispatch jobs:
with a SQLite file the supervisor has open (a worker forked while that connection was
open could not open the file: "locking protocol") and with PostgreSQL."""

from __future__ import annotations

from runtime import connect
from tests.conftest import END_STATES, wait_for, write_config


def test_a_job_enqueues_a_job_into_its_own_database(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, storage=storage, pools={"default": {"max_jobs": 2}})
    with connect(config=str(config)) as q:
        start_supervisor(config)  # its storage open before it forks the workers
        parents = [q.enqueue("jobs.examples:enqueue_from_job", str(config), f"child {n}")
                   for n in range(5)]  # max_jobs 2: workers forked again meanwhile
        wait_for(lambda: all(q.status(i).state in END_STATES for i in parents), 60,
                 "the jobs that enqueue to end")
        records = [q.status(i) for i in parents]
        assert [r.state for r in records] == ["succeeded"] * 5, [r.error for r in records]
        children = [r.result for r in records]
        wait_for(lambda: all(q.status(i).state == "succeeded" for i in children),
                 what="the enqueued jobs to run")
        assert sorted(q.status(i).args[0] for i in children) == [f"child {n}" for n in range(5)]
