"""jobrt: an actor-style multiprocessing job runtime.

Public API: `job` (decorator), `connect` (enqueue and query), `Pool` (the
supervised worker pool embedded in a script), and, inside a running job,
`release`, `fail`, `attempt`, `job_id`. Batches: `Queue.batch()` returns a `BatchHandle`;
chains: `Queue.chain()` returns a `ChainHandle`.
"""

from runtime.batching import BatchHandle
from runtime.chaining import ChainHandle
from runtime.client import Queue, connect
from runtime.embedded.pool import Pool
from runtime.errors import (
    BatchFinished, BatchNotFound, ChainNotFound, ConfigError, JobFailed, JobNotFound, JobrtError,
    PayloadError, StorageError, UnknownJob,
)
from runtime.job_context import attempt, fail, job_id, release
from runtime.registry import job

__all__ = [
    "BatchFinished", "BatchHandle", "BatchNotFound", "ChainHandle", "ChainNotFound", "ConfigError",
    "JobFailed", "JobNotFound", "JobrtError", "PayloadError", "Pool", "Queue", "StorageError", "UnknownJob",
    "attempt", "connect", "fail", "job", "job_id", "release",
]
