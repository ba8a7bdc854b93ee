"""What a running job may ask of its run beyond its arguments (runtime.job_context:
current_batch(), previous_result(), scheduled_at()), read here when the supervisor claims
the job and sent with it in its RUN frame, since a worker never touches storage:

    claimed jobs  --batch_id / chain_id-->  storage.batch / chain / get  -->  job.context
                  --options' scheduled_at-->                                  job.context

    "batch"         the record of the batch it is a member of, as it was when it was claimed
    "previous"      the result of the chain step before it (after a batch step: that batch's
                    record); absent for a first step
    "scheduled_at"  the tick time of a schedule's job (runtime.schedules.tick_job)

Only jobs of workflows cost a read: one per batch per claim, two per chain step.
A read that fails leaves the job its arguments and the reason, which those functions
raise: a job is never held back for want of its context.
"""

from __future__ import annotations

import orjson

from runtime.errors import StorageError

SCHEDULED = b'"scheduled_at"'  # in a schedule's job's options


def _has_context(job) -> bool:
    return job.batch_id is not None or job.chain_id is not None \
        or (job.options is not None and SCHEDULED in job.options)


def attach(storage, jobs: list) -> list:
    """The claimed `jobs`, each of a workflow or a schedule given its context."""
    if not any(map(_has_context, jobs)):
        return jobs  # the common case: one pass, nothing read
    batches: dict = {}
    found = []
    for job in jobs:
        if not _has_context(job):
            found.append(job)
            continue
        context = {}
        if job.options is not None and SCHEDULED in job.options:
            context["scheduled_at"] = orjson.loads(job.options).get("scheduled_at")
        try:
            if job.batch_id is not None:
                if job.batch_id not in batches:
                    record = storage.batch(int(job.batch_id))
                    batches[job.batch_id] = None if record is None else record.to_dict()
                context["batch"] = batches[job.batch_id]
            if job.chain_id is not None:
                context.update(_previous(storage, job))
        except StorageError as exc:
            context["unreadable"] = f"storage could not be read when the job was claimed: {exc}"
        found.append(job._replace(context=context))
    return found


def _previous(storage, job) -> dict:
    chain = storage.chain(job.chain_id)
    index = chain.jobs.index(job.id) if chain is not None and job.id in chain.jobs else 0
    if index == 0:
        return {}
    before = chain.jobs[index - 1]
    if isinstance(before, dict):
        record = storage.batch(before["batch"])
        return {"previous": None if record is None else record.to_dict()}
    record = storage.get(before)
    return {"previous": None if record is None else record.result}
