"""`jobrt batch list|show ID|cancel ID|retry ID`: batches as operators see and tend them
(the logic is runtime.batching's, which Queue's batch methods use too)."""

from __future__ import annotations

from runtime import batching
from runtime.cli.admin import EXIT_OK, _whole, _when, client_storage, config_arg, emit, json_arg, limit
from runtime.numbers import INT_MAX


def add_parser(commands) -> None:
    batch = commands.add_parser("batch", help="batches: their counts, progress and callbacks")
    actions = batch.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "list batches, newest first"),
                       ("show", "one batch: counts, progress, times, failed members, callbacks"),
                       ("cancel", "cancel a batch's pending members (running ones finish)"),
                       ("retry", "run a batch's failed members again")):
        sub = actions.add_parser(name, help=text)
        config_arg(sub)
        json_arg(sub)
        if name == "list":
            sub.add_argument("--limit", type=limit, default=100, help="at most this many (default 100)")
        elif name == "cancel":
            sub.add_argument("--kill", action="store_true",
                             help="kill its running members too (they end cancelled)")
        if name != "list":
            sub.add_argument("id", type=_batch_id, metavar="ID", help="the batch's id")


def _batch_id(text: str) -> int:
    return _whole(text, 1, INT_MAX, "a batch id")


def cmd_batch(args) -> int:
    with client_storage(args) as storage:
        if args.action == "list":
            records = storage.batches(args.limit)
            if args.json:
                emit([record.to_dict() for record in records])
            else:
                for record in records:
                    print(_line(record))
                if not records:
                    print("no batches")
            return EXIT_OK
        if args.action == "show":
            record = batching.status(storage, args.id)
            emit(record.to_dict()) if args.json else _show(record)
            return EXIT_OK
        if args.action == "cancel":
            cancelled = batching.cancel(storage, args.id, args.kill)
            running = "running ones are killed" if args.kill else "running ones finish"
            text = (f"its pending members are cancelled; {running}" if cancelled
                    else "it had finished already; left as it is")
            document = {"id": args.id, "cancelled": cancelled}
        else:
            count = batching.retry(storage, args.id)
            text = f"{count} failed member{'s' * (count != 1)} put back in {'their queues' if count != 1 else 'its queue'}"
            document = {"id": args.id, "retried": count}
    emit(document) if args.json else print(f"batch {args.id}: {text}")
    return EXIT_OK


def _state(record) -> str:
    if record.finished_at is not None:
        return "finished"
    return "cancelling" if record.cancelled_at is not None else "open"


def _line(record) -> str:
    name = record.name or "-"
    return (f"{record.id:>8}  {name[:32]:<32} {record.queue:<12} {_state(record):<10} "
            f"{record.progress:>3}%  {record.total} total, {record.succeeded} ok, "
            f"{record.failed} failed, {record.cancelled} cancelled")


def _show(record) -> None:
    print(f"{'id':>14}: {record.id}")
    print(f"{'name':>14}: {record.name or '-'}")
    print(f"{'queue':>14}: {record.queue} (its callbacks run there)")
    print(f"{'state':>14}: {_state(record)}")
    print(f"{'progress':>14}: {record.progress}%")
    for key in ("total", "pending", "running", "succeeded", "failed", "cancelled"):
        print(f"{key:>14}: {getattr(record, key)}")
    print(f"{'failures':>14}: {'allowed' if record.allow_failures else 'the first cancels the batch'}")
    for key in ("created_at", "finished_at", "cancelled_at"):
        stamp = getattr(record, key)
        print(f"{key:>14}: {_when(stamp) if stamp is not None else '-'}")
    failed = record.failed_job_ids
    print(f"{'failed jobs':>14}: {', '.join(map(str, failed[:50])) or '-'}"
          f"{f' (and {len(failed) - 50} more: --json lists all)' if len(failed) > 50 else ''}")
    for label, callback in (("then", record.then), ("catch", record.catch), ("finally", record.finally_)):
        print(f"{label:>14}: {callback or '-'}")


COMMANDS = {"batch": cmd_batch}
