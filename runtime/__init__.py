"""jobrt: an actor-style multiprocessing job runtime.

Public API: `job` (decorator), `connect` (enqueue and query), `Pool` (the
supervised worker pool embedded in a script), and, inside a running job,
`release`, `fail`, `attempt`, `job_id`, `current_batch`, `previous_result`, `scheduled_at`.
Batches: `Queue.batch()` returns a `BatchHandle`;
chains: `Queue.chain()` returns a `ChainHandle`; `Batch` and `Chain` nest one in the other.
"""

from runtime.batching import BatchHandle
from runtime.chaining import ChainHandle
from runtime.client import Queue, connect
from runtime.embedded.pool import Pool
from runtime.errors import (
    BatchFinished, BatchNotFound, ChainNotFound, ConfigError, JobFailed, JobNotFound, JobrtError,
    PayloadError, StorageError, UnknownJob,
)
from runtime.job_context import (
    attempt, current_batch, fail, job_id, previous_result, release, scheduled_at,
)
from runtime.registry import job
from runtime.workflow_specs import Batch, Chain

__all__ = [
    "Batch", "BatchFinished", "BatchHandle", "BatchNotFound", "Chain", "ChainHandle", "ChainNotFound", "ConfigError",
    "JobFailed", "JobNotFound", "JobrtError", "PayloadError", "Pool", "Queue", "StorageError", "UnknownJob",
    "attempt", "connect", "current_batch", "fail", "job", "job_id", "previous_result", "release",
    "scheduled_at",
]
