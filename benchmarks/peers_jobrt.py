"""jobrt in benchmarks/peers.py: its jobs (imported by the workers) and its adapter.

Storage: SQLite in WAL mode (the client commits with synchronous=FULL), a new file for
each step. Workers: `jobrt start` as a user runs it, one pool of --workers processes.
"""

import os

import peers_marks
from runtime import job


@job
def mark() -> None:
    peers_marks.mark()


@job(timeout=1, tries=1)
def spin() -> None:
    peers_marks.spin()


class Adapter:
    name = "jobrt"
    distribution = "jobrt"
    bulk_api = "Queue.enqueue_many (one transaction)"
    recycle_option = "max_jobs = 100 in the pool's table (jitter: +0-10 %)"
    no_recycle = ""
    hard_timeout = True
    timeout_kind = "the supervisor kills the worker's process group"

    def __init__(self, workers, directory):
        self.workers, self.directory = workers, directory
        self.database = os.path.join(directory, "jobrt.db")
        self.started_as = f"jobrt start --config supervisor.toml (a pool of {workers} workers)"
        self.queue = None

    def config(self, recycle: int) -> str:
        import tomli_w

        path = os.path.join(self.directory, f"supervisor-{recycle}.toml")
        with open(path, "w") as out:
            out.write(tomli_w.dumps({
                "storage": {"url": f"sqlite:///{self.database}"},
                "jobs": {"modules": ["peers_jobrt"], "path": [os.path.dirname(os.path.abspath(__file__))]},
                "pools": {"default": {"queues": ["default"], "workers": self.workers, "timeout": 60,
                                      "max_jobs": recycle, "run_as_root": os.geteuid() == 0}},
            }))
        return path

    def reset(self):
        from runtime import connect

        self.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.database + suffix):
                os.unlink(self.database + suffix)
        self.queue = connect(config=self.config(0))

    def enqueue_one(self):
        self.queue.enqueue("peers_jobrt:mark")

    def enqueue_bulk(self, count):
        self.queue.enqueue_many([("peers_jobrt:mark", ())] * count)

    def enqueue_spin(self):
        self.queue.enqueue("peers_jobrt:spin")

    def worker_commands(self, recycle):
        return [["jobrt", "start", "--config", self.config(recycle), "--log-level", "warning"]]

    def close(self):
        if self.queue is not None:
            self.queue.close()
            self.queue = None
