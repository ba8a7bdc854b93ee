"""Celery in benchmarks/peers.py: its tasks (imported by the worker) and its adapter.

Broker: Redis ($PEERS_REDIS, database 1), no result backend. Worker: `celery -A
peers_celery worker -c N` (prefork pool, its other defaults: prefetch 4, acks on receipt).
"""

import os

import peers_marks
from celery import Celery

app = Celery("peers_celery", broker=os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379") + "/1")
app.conf.broker_connection_retry_on_startup = True


@app.task
def mark():
    peers_marks.mark()


@app.task(time_limit=1, max_retries=0)
def spin():
    peers_marks.spin()


class Adapter:
    name = "celery"
    distribution = "celery"
    bulk_api = "one producer connection for every apply_async (Celery has no batch publish)"
    recycle_option = "--max-tasks-per-child 100"
    no_recycle = ""
    hard_timeout = True
    timeout_kind = "time_limit: the pool's parent kills the child with SIGKILL"

    def __init__(self, workers, directory):
        self.workers, self.directory = workers, directory
        self.started_as = f"celery -A peers_celery worker -c {workers} -l WARNING (prefork)"

    def reset(self):
        with app.connection_for_write() as conn:
            conn.default_channel.client.flushdb()

    def enqueue_one(self):
        mark.delay()

    def enqueue_bulk(self, count):
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                mark.apply_async(producer=producer)

    def enqueue_spin(self):
        spin.delay()

    def worker_commands(self, recycle):
        command = ["celery", "-A", "peers_celery", "worker", "-c", str(self.workers), "-l", "WARNING"]
        return [command + (["--max-tasks-per-child", str(recycle)] if recycle else [])]

    def close(self):
        app.close()
