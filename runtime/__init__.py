"""jobrt: an actor-style multiprocessing job runtime.

Public API: `job` (decorator), `connect` (enqueue and query), and, inside a
running job, `release`, `fail`, `attempt`, `job_id`.
"""

from .client import Queue, connect
from .context import attempt, fail, job_id, release
from .errors import ConfigError, JobNotFound, JobrtError, PayloadError, StorageError, UnknownJob
from .registry import job

__all__ = [
    "ConfigError", "JobNotFound", "JobrtError", "PayloadError", "Queue", "StorageError", "UnknownJob",
    "attempt", "connect", "fail", "job", "job_id", "release",
]
