"""`jobrt pause|resume --queue Q` and `jobrt restart`: operators' requests that every
supervisor on the storage follows (runtime.supervisor.controls), on its heartbeat, and at
once on this host (and on PostgreSQL, every host) since the command wakes them."""

from __future__ import annotations

import time

from runtime.cli.admin import EXIT_OK, client_storage, config_arg, emit, json_arg, queue_name

PICKUP = "within a heartbeat (2 s), at once on this host"


def add_parsers(commands) -> None:
    for verb, text in (("pause", "stop claiming jobs of queues on every supervisor (running ones finish)"),
                       ("resume", "claim jobs of paused queues again")):
        sub = commands.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        config_arg(sub)
        sub.add_argument("--queue", required=True, action="append", type=queue_name, metavar="Q",
                         help="a queue (repeat for more)")
        json_arg(sub)
    restart = commands.add_parser(
        "restart", help="every supervisor replaces its workers gracefully, as SIGHUP does (after a deploy)",
        description="Ask every supervisor on the storage to reload its config and replace its "
                    "workers gracefully, as SIGHUP does for one: running jobs finish.")
    config_arg(restart)
    json_arg(restart)


def _live(storage) -> int:
    from runtime.cli.health import live_supervisors

    return len(live_supervisors(storage, time.time()))


def _supervisors(n: int, verb: str) -> str:
    """"1 live supervisor follows", "2 live supervisors follow"."""
    return f"{n} live supervisor{'s' if n != 1 else ''} {verb}{'s' if n == 1 else ''}"


def cmd_pause(args) -> int:
    return _pause_or_resume(args, pause=True)


def cmd_resume(args) -> int:
    return _pause_or_resume(args, pause=False)


def _pause_or_resume(args, pause: bool) -> int:
    queues = list(dict.fromkeys(args.queue))
    with client_storage(args) as storage:
        changed = storage.pause_queues(queues, time.time()) if pause else storage.resume_queues(queues)
        storage.notify()  # wake the supervisors: they read the paused queues at once
        paused, live = sorted(storage.paused_queues()), _live(storage)
    verb = "paused" if pause else "resumed"
    if args.json:
        emit({verb: changed, "unchanged": sorted(set(queues) - set(changed)),
              "paused_queues": paused, "live_supervisors": live})
        return EXIT_OK
    for queue in queues:
        if queue in changed:
            print(f"{verb} queue {queue}")
        else:
            print(f"queue {queue} was {'already paused' if pause else 'not paused'}")
    if changed:
        what = "no job of it starts" if pause else "its jobs start again"
        if live:
            print(f"{_supervisors(live, 'follow')} {PICKUP}: {what}"
                  + ("; running jobs finish" if pause else ""))
        else:
            print(f"no supervisor is live; those started later see it at once: {what}")
    print(f"paused queues: {', '.join(paused) or 'none'}")
    return EXIT_OK


def cmd_restart(args) -> int:
    with client_storage(args) as storage:
        generation = storage.request_restart(time.time())
        storage.notify()
        live = _live(storage)
    if args.json:
        emit({"restart": generation, "live_supervisors": live})
    elif live:
        print(f"restart requested: {_supervisors(live, 'replace')} their workers {PICKUP} "
              f"(running jobs finish first)")
    else:
        print("restart requested, but no supervisor is live: those started later need no restart")
    return EXIT_OK


COMMANDS = {"pause": cmd_pause, "resume": cmd_resume, "restart": cmd_restart}
