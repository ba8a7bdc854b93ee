"""max_exceptions with `jobrt start`: a job that keeps raising fails for good after N
exceptions though tries remain; timeouts use tries, never exceptions (Laravel's
$maxExceptions). On SQLite and PostgreSQL: the count lives in the job's row."""

from __future__ import annotations

from runtime import connect
from tests.conftest import END_STATES, jobrt, wait_for, write_config


def test_a_job_fails_for_good_at_its_max_exceptions_with_tries_left(tmp_path, start_supervisor, storage):
    config = write_config(tmp_path, storage=storage)
    start_supervisor(config)
    with connect(config=str(config)) as q:
        raising = q.enqueue("jobs.examples:fail", "boom", _tries=10, _backoff=0, _max_exceptions=3)
        timing_out = q.enqueue("jobs.examples:busy_loop", _timeout=0.2, _tries=2, _backoff=0,
                               _max_exceptions=1)
        record = wait_for(lambda: (r := q.status(raising)).state in END_STATES and r, 60, "the raising job")
        assert (record.state, record.attempts, record.exceptions) == ("failed", 3, 3)
        assert record.error.startswith("RuntimeError: boom") and "exception 3 of max_exceptions 3" in record.error
        assert record.options["max_exceptions"] == 3
        # Two timeouts: both tries used, no exception counted, so max_exceptions=1 never fired.
        record = wait_for(lambda: (r := q.status(timing_out)).state in END_STATES and r, 60, "the slow job")
        assert (record.state, record.attempts, record.exceptions) == ("failed", 2, 0)
        assert "attempt 2 of 2" in record.error
    status, out, err = jobrt("job", "--config", config, raising)
    assert status == 0 and "exceptions: 3" in out and '"max_exceptions":3' in out, out + err
