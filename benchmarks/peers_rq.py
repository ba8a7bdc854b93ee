"""RQ in benchmarks/peers.py: its jobs (imported by the workers) and its adapter.

Storage: Redis ($PEERS_REDIS, database 2). Workers: --workers `rq worker` processes, each
forking a work horse per job (its default Worker class).
"""

import os

import peers_marks

URL = os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379") + "/2"


def mark():
    peers_marks.mark()


def spin():
    peers_marks.spin()


class Adapter:
    name = "rq"
    distribution = "rq"
    bulk_api = "Queue.enqueue_many (one pipeline)"
    recycle_option = ""
    no_recycle = "n/a: a new work horse is forked for every job"
    hard_timeout = True
    timeout_kind = "job_timeout: SIGALRM in the work horse, and the worker kills the horse once it runs 60 s past it (checked every 30 s)"

    def __init__(self, workers, directory):
        from redis import Redis
        from rq import Queue

        self.workers, self.directory = workers, directory
        self.started_as = f"{workers} x rq worker --url URL -q"
        self.redis = Redis.from_url(URL)
        self.queue = Queue(connection=self.redis)

    def reset(self):
        self.redis.flushdb()

    def enqueue_one(self):
        self.queue.enqueue(mark)

    def enqueue_bulk(self, count):
        from rq import Queue

        self.queue.enqueue_many([Queue.prepare_data(mark) for _ in range(count)])

    def enqueue_spin(self):
        self.queue.enqueue(spin, job_timeout=1)

    def worker_commands(self, recycle):
        return [["rq", "worker", "--url", URL, "-q"] for _ in range(self.workers)]

    def close(self):
        self.redis.close()
