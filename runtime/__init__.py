"""jobrt: an actor-style multiprocessing job runtime.

Public API: `job` (decorator), `connect` (enqueue and query), `Pool` (the
supervised worker pool embedded in a script), and, inside a running job,
`release`, `fail`, `attempt`, `job_id`, `current_batch`, `previous_result`, `scheduled_at`.
Batches: `Queue.batch()` returns a `BatchHandle`;
chains: `Queue.chain()` returns a `ChainHandle`; `Batch` and `Chain` nest one in the other.

Names load on first use (PEP 562): a job module's `from runtime import job` imports the
decorator alone, not the client, its storage backends and the Pool, so workers, forked
from an image of what job modules import, stay small.
"""

import importlib

_WHERE = {
    "BatchHandle": "runtime.batching", "ChainHandle": "runtime.chaining",
    "Queue": "runtime.client", "connect": "runtime.client", "Pool": "runtime.embedded.pool",
    "job": "runtime.registry", "Batch": "runtime.workflow_specs", "Chain": "runtime.workflow_specs",
    **dict.fromkeys(("BatchFinished", "BatchNotFound", "ChainNotFound", "ConfigError", "JobFailed",
                     "JobNotFound", "JobrtError", "PayloadError", "StorageError", "UnknownJob"),
                    "runtime.errors"),
    **dict.fromkeys(("attempt", "current_batch", "fail", "job_id", "previous_result", "release",
                     "scheduled_at"), "runtime.job_context"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
