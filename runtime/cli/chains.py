"""`jobrt chain show ID`: a chain as operators see it, each step with its job and that
job's state (the logic is runtime.chaining's, which Queue's chain methods use too)."""

from __future__ import annotations

from runtime import chaining
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
    yet has neither (`waiting`, or `never` once the chain ended without reaching it)."""
    steps = []
    for index, name in enumerate(record.steps):
        job_id = record.jobs[index] if index < len(record.jobs) else None
        if job_id is None:
            state = "waiting" if record.state == "running" else "never"
        else:
            job = storage.get(job_id)
            state = job.state if job is not None else "pruned"
        steps.append({"index": index, "name": name, "job_id": job_id, "state": state})
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
        job = step["job_id"] if step["job_id"] is not None else "-"
        print(f"{step['index']:>12}: {step['name']:<40} job {job:<10} {step['state']}")


COMMANDS = {"chain": cmd_chain}
