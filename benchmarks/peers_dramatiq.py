"""Dramatiq in benchmarks/peers.py: its actors (imported by the workers) and its adapter.

Broker: Redis ($PEERS_REDIS, database 3). Workers: `dramatiq peers_dramatiq -p N`, with
its default of 8 threads per process.
"""

import os

import dramatiq
import peers_marks
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379") + "/3")
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def mark():
    peers_marks.mark()


@dramatiq.actor(max_retries=0, time_limit=1000)
def spin():
    peers_marks.spin()


class Adapter:
    name = "dramatiq"
    distribution = "dramatiq"
    bulk_api = "dramatiq.group(...).run() (a loop of enqueues)"
    recycle_option = ""
    no_recycle = "no max-tasks-per-child option"
    hard_timeout = False
    timeout_kind = "no hard timeout: time_limit sends the thread an exception, raised only when it runs Python again"

    def __init__(self, workers, directory):
        self.workers, self.directory = workers, directory
        self.started_as = f"dramatiq peers_dramatiq -p {workers} (8 threads each, its default)"

    def reset(self):
        broker.flush_all()

    def enqueue_one(self):
        mark.send()

    def enqueue_bulk(self, count):
        dramatiq.group(mark.message() for _ in range(count)).run()

    def enqueue_spin(self):
        spin.send()

    def worker_commands(self, recycle):
        return [["dramatiq", "peers_dramatiq", "-p", str(self.workers)]]

    def close(self):
        broker.close()
