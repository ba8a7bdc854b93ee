"""procrastinate in benchmarks/peers.py: its tasks (imported by the workers) and its adapter.

Storage: PostgreSQL ($PEERS_PG, fsync on). Workers: --workers `procrastinate worker`
processes, each with its default concurrency of 1 (a sync task runs in a thread).
"""

import os

import peers_marks
import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("PEERS_PG", "")),
                        import_paths=["peers_procrastinate"])


@app.task(name="mark")
def mark():
    peers_marks.mark()


@app.task(name="spin")
def spin():
    peers_marks.spin()


class Adapter:
    name = "procrastinate"
    distribution = "procrastinate"
    bulk_api = "Task.batch_defer (one statement)"
    recycle_option = ""
    no_recycle = "no max-tasks-per-child option"
    hard_timeout = False
    timeout_kind = "no hard timeout: procrastinate has no job timeout"

    def __init__(self, workers, directory):
        self.workers, self.directory = workers, directory
        self.started_as = f"{workers} x procrastinate --app peers_procrastinate.app worker"
        app.open()  # synchronous use, as from a WSGI application
        app.schema_manager.apply_schema()

    def reset(self):
        import psycopg

        with psycopg.connect(os.environ["PEERS_PG"], autocommit=True) as conn:
            conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers CASCADE")

    def enqueue_one(self):
        mark.defer()

    def enqueue_bulk(self, count):
        mark.batch_defer(*[{}] * count)

    def enqueue_spin(self):
        spin.defer()

    def worker_commands(self, recycle):
        return [["procrastinate", "--app", "peers_procrastinate.app", "worker"] for _ in range(self.workers)]

    def close(self):
        app.close()
