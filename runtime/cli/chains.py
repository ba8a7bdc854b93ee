"""`jobrt chain show ID`: a chain as operators see it, each step with its job and that
job's state (the logic is runtime.chaining's, which Queue's chain methods use too)."""

from __future__ import annotations

from runtime import chaining
from runtime.storage.workflows import step_outcome
from runtime.cli.admin import EXIT_OK, _whole, _when, client_storage, config_arg, emit, json_arg
from runtime.numbers import INT_MAX


def add_parser(commands) -> None:
    chain = commands.add_parser("chain", help="chains: their steps, one after another, and their state")
    actions = chain.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="one chain: its state, catch, and each step's job and state")
    config_arg(show)
    json_arg(show)
    show.add_argument("id", type=_chain_id, metavar="ID", help="the chain's id")


def _chain_id(text: str) -> int:
    return _whole(text, 1, INT_MAX, "a chain id")


def cmd_chain(args) -> int:
    with client_storage(args) as storage:
        record = chaining.status(storage, args.id)
        steps = _steps(storage, record)
    if args.json:
        emit({**record.to_dict(), "step_states": steps})
    else:
        _show(record, steps)
    return EXIT_OK


def _steps(storage, record) -> list[dict]:
    """Each step: its index, job name, and the id and state of its job; a step not enqueued
    yet has neither (`waiting`, or `never` once the chain ended without reaching it). A
    batch step has its batch's id (`batch_id`) and state instead, with its progress."""
    steps = []
    for index, name in enumerate(record.steps):
        made = record.jobs[index] if index < len(record.jobs) else None
        step = {"index": index, "name": name, "job_id": made}
        if made is None:
            step["state"] = "waiting" if record.state == "running" else "never"
        elif isinstance(made, dict):
            batch = storage.batch(made["batch"])
            step.update(job_id=None, batch_id=made["batch"],
                        state="pruned" if batch is None else step_outcome(batch.to_dict()) or "running",
                        progress=None if batch is None else batch.progress)
        else:
            job = storage.get(made)
            step["state"] = job.state if job is not None else "pruned"
        steps.append(step)
    return steps


def _show(record, steps: list[dict]) -> None:
    print(f"{'id':>12}: {record.id}")
    print(f"{'state':>12}: {record.state}")
    print(f"{'queue':>12}: {record.queue} (its catch runs there)")
    print(f"{'catch':>12}: {record.catch or '-'}")
    for key in ("created_at", "finished_at"):
        stamp = getattr(record, key)
        print(f"{key:>12}: {_when(stamp) if stamp is not None else '-'}")
    print(f"{'steps':>12}: {len(steps)}")
    for step in steps:
        name = step["name"]
        if isinstance(name, dict):  # a batch step
            label = f"batch {name['batch'] or '(no name)'} ({name['members']} members)"
            made = f"batch {step.get('batch_id') or '-':<8}"
            state = step["state"] + (f" {step['progress']}%" if step.get("progress") is not None else "")
        else:
            label, made, state = name, f"job {step['job_id'] or '-':<10}", step["state"]
        print(f"{step['index']:>12}: {label:<40} {made} {state}")


COMMANDS = {"chain": cmd_chain}
