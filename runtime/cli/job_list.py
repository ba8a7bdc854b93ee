"""`jobrt jobs`: the jobs, newest first, filtered by state, queue, name and tag, a page at a
time by id (keyset: each page is an index walk from the cursor, however many jobs exist)."""

from __future__ import annotations

import argparse
import time

from runtime.cli.admin import EXIT_OK, _shown, _whole, client_storage, config_arg, emit, json_arg, queue_name
from runtime.numbers import INT_MAX
from runtime.storage import STATES
from runtime.storage.browse import PAGE_MAX
from runtime.tags import MAX_LENGTH, is_tag

DEFAULT_LIMIT = 50


def _page_size(text: str) -> int:
    return _whole(text, 1, PAGE_MAX, "a page size")


def _cursor(text: str) -> int:
    return _whole(text, 1, INT_MAX, "a job id (the `next` of the page before)")


def _tag(text: str) -> str:
    if not is_tag(text):
        raise argparse.ArgumentTypeError(f"must be a tag (printable text of 1 to {MAX_LENGTH} "
                                         f"characters), got {_shown(text)}")
    return text


def _job_name(text: str) -> str:
    if not text or len(text) > 200 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"must be a job name (printable, 1 to 200 characters), "
                                         f"got {_shown(text)}")
    return text


def add_parser(commands) -> None:
    jobs = commands.add_parser(
        "jobs", help="list jobs newest first, by state, queue, name or tag, a page at a time",
        description="List jobs newest first. Pages by id: --after takes the `next` id a page "
                    "printed, so listing a million jobs costs each page the same.")
    config_arg(jobs)
    jobs.add_argument("--state", choices=STATES, help="only jobs in this state")
    jobs.add_argument("--queue", type=queue_name, help="only jobs of this queue")
    jobs.add_argument("--name", type=_job_name, help="only jobs of this job name")
    jobs.add_argument("--tag", type=_tag, help="only jobs with this tag (@job(tags=...), _tags=...)")
    jobs.add_argument("--limit", type=_page_size, default=DEFAULT_LIMIT,
                      help=f"jobs per page, 1 to {PAGE_MAX} (default {DEFAULT_LIMIT})")
    jobs.add_argument("--after", type=_cursor, metavar="ID",
                      help="the page after the one whose `next` was ID (jobs older than it)")
    json_arg(jobs)


def cmd_jobs(args) -> int:
    with client_storage(args) as storage:
        found = storage.jobs_page(state=args.state, queue=args.queue, name=args.name, tag=args.tag,
                                  before=args.after, limit=min(args.limit + 1, PAGE_MAX))
    more = len(found) > args.limit or (len(found) == args.limit == PAGE_MAX)
    found = found[:args.limit]
    cursor = found[-1].id if more and found else None
    if args.json:
        emit({"jobs": [record.to_dict() for record in found], "next": cursor})
        return EXIT_OK
    if not found:
        print("no jobs" + (" on this page" if args.after else "") + " match")
        return EXIT_OK
    print(f"{'id':>10}  {'state':<10} {'queue':<14} {'name':<36} {'tries':>5}  {'created':<19}  tags")
    for r in found:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
        print(f"{r.id:>10}  {r.state:<10} {r.queue[:14]:<14} {r.name[:36]:<36} {r.attempts:>5}  "
              f"{created:<19}  {', '.join(r.tags)}")
    if cursor is not None:
        print(f"more: add --after {cursor}")
    return EXIT_OK


COMMANDS = {"jobs": cmd_jobs}
