"""huey in benchmarks/peers.py: its tasks (imported by the consumer) and its adapter.

Storage: SqliteHuey with its defaults (WAL, SQLite's default synchronous=FULL), the file
$PEERS_DIR/huey.db. Workers: `huey_consumer peers_huey.huey -w N -k process`.
"""

import os

import peers_marks
from huey import SqliteHuey

huey = SqliteHuey("peers", filename=os.path.join(os.environ.get("PEERS_DIR", "."), "huey.db"))


@huey.task()
def mark():
    peers_marks.mark()


@huey.task(timeout=1, retries=0)
def spin():
    peers_marks.spin()


class Adapter:
    name = "huey"
    distribution = "huey"
    bulk_api = ""
    recycle_option = "-M 100 (--max-tasks; the consumer respawns a worker on its health check, every 10 s)"
    no_recycle = ""
    hard_timeout = False
    timeout_kind = "no hard timeout: SIGALRM raises in the worker's Python code, which a C call does not reach"

    def __init__(self, workers, directory):
        self.workers, self.directory = workers, directory
        self.started_as = f"huey_consumer peers_huey.huey -w {workers} -k process -q"

    def reset(self):
        huey.flush()

    def enqueue_one(self):
        mark()

    def enqueue_bulk(self, count):
        for _ in range(count):
            mark()

    def enqueue_spin(self):
        spin()

    def worker_commands(self, recycle):
        command = ["huey_consumer", "peers_huey.huey", "-w", str(self.workers), "-k", "process", "-q"]
        return [command + (["-M", str(recycle)] if recycle else [])]

    def close(self):
        huey.storage.close()
