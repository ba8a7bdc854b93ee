"""Chains in the SQLite backend, inside its write transactions: creating one with its
first step, and moving on the chains that migration 13's trigger (a step job ended) or
migration 14's (a batch step finished) marked due, by runtime.storage.chain_rules."""

from __future__ import annotations

import sqlite3

import orjson

from runtime.storage import chain_rules, sqlite_insert
from runtime.storage.base import PENDING, RUNNING
from runtime.storage.workflows import ChainRecord, step_label, step_outcome, step_spec
from runtime.storage.sqlite_counts import Tally
from runtime.storage.sqlite_file import SQL, rows


def create(conn: sqlite3.Connection, tally: Tally, steps: list, catch, queue: str,
           now: float, batch_id: int | None = None):
    """A chain (a member of batch `batch_id`, if given) and its first step: (chain id, the
    first step's job id, or None when it is a batch)."""
    specs = [step_spec(step) for step in steps]
    chain_id = conn.execute(SQL["insert_chain"], (queue, catch, orjson.dumps(specs).decode(),
                                                  now, batch_id)).lastrowid
    first, _ = _enqueue(conn, tally, chain_id, batch_id, specs[0], now)
    conn.execute(SQL["chain_moved"], (RUNNING, None, 0, orjson.dumps([first]).decode(),
                                      chain_id))
    return chain_id, first if isinstance(first, int) else None


def record(row: dict) -> ChainRecord:
    return ChainRecord(id=row["id"], queue=row["queue"], state=row["state"],
                       steps=[step_label(step) for step in orjson.loads(row["steps"])],
                       jobs=orjson.loads(row["jobs"]), created_at=row["created_at"],
                       finished_at=row["finished_at"], catch=row["catch_job"],
                       batch_id=row["batch_id"])


def work_due(conn: sqlite3.Connection, tally: Tally, now: float) -> bool:
    """Move on each chain marked due, in id order; True if that made a batch or changed
    the counts of the batch a chain is a member of (its work is due then)."""
    touched = False
    for row in rows(conn.execute(SQL["chains_due"])):
        specs, jobs = orjson.loads(row["steps"]), orjson.loads(row["jobs"])
        last = jobs[-1]
        if isinstance(last, dict):
            found = rows(conn.execute(SQL["batch_row"], (last["batch"],)))
            outcome = step_outcome(found[0] if found else None)
        else:
            found = conn.execute(SQL["job_state"], (last,)).fetchone()
            outcome = found[0] if found else None
        member_of = None
        if row["batch_id"] is not None:
            member_of = conn.execute(SQL["batch_cancelled_at"], (row["batch_id"],)).fetchone()
        move = chain_rules.move(row["state"], bool(row["fired"]), row["catch_job"] is not None,
                                outcome, len(jobs), len(specs), member_of is not None,
                                member_of is not None and member_of[0] is not None)
        if move is None:
            conn.execute(SQL["chain_seen"], (row["id"],))
            continue
        if move.cancelled:
            conn.execute(SQL["batch_unrun"], (move.cancelled, row["batch_id"]))
            touched = True
        if move.enqueue_next:
            entry, made_batch = _enqueue(conn, tally, row["id"], row["batch_id"],
                                         specs[len(jobs)], now)
            jobs.append(entry)
            touched |= made_batch
        conn.execute(SQL["chain_moved"], (move.state, now if move.finished else None,
                                          1 if move.fired else 0, orjson.dumps(jobs).decode(),
                                          row["id"]))
        if move.catch:
            payload = orjson.dumps([[record(rows(conn.execute(SQL["chain_row"], (row["id"],)))[0])
                                     .to_dict()], {}])
            conn.execute(SQL["insert_callback"], (row["queue"], row["catch_job"], payload, now, now))
            tally.add(PENDING, row["queue"], row["catch_job"], now, 1)
            tally.wake = True
    return touched


def _enqueue(conn: sqlite3.Connection, tally: Tally, chain_id: int, batch_id: int | None,
             step, now: float):
    """Enqueue a step: (its job id, False), or for a batch step ({"batch": id}, True)."""
    tally.wake = True
    if isinstance(step, dict):
        queue, name, then, catch, finally_, allow = step["batch"]
        made = conn.execute(SQL["insert_batch"], (name, queue, then, catch, finally_,
                                                  1 if allow else 0, now, chain_id)).lastrowid
        for member in step["members"]:
            _insert_job(conn, tally, member, made, None, now)
        conn.execute(SQL["batch_grew"], (len(step["members"]), made))
        return {"batch": made}, True
    return _insert_job(conn, tally, step, batch_id, chain_id, now), False


def _insert_job(conn: sqlite3.Connection, tally: Tally, step: list, batch_id, chain_id,
                now: float) -> int:
    queue, name, payload, priority, options, delay, overlap, rate, most, period = step[:10]
    [job_id] = sqlite_insert.insert_each(conn, tally, [(
        queue, name, payload.encode(), priority, None if options is None else options.encode(),
        now + delay, now, None, None if batch_id is None else str(batch_id), None, 0, None,
        overlap, rate, most, period)])
    if len(step) > 10:  # its tags (workflows.step_spec)
        conn.executemany(SQL["insert_tag"], [(tag, job_id) for tag in step[10]])
    if chain_id is not None:
        conn.execute(SQL["chain_step"], (chain_id, job_id))
    return job_id


class SqliteChainVerbs:
    """The chain verbs of SqliteStorage (mixed in; they use its _write, _cursor and
    _workflows_due)."""

    def create_chain(self, steps: list, catch, queue: str, now: float):
        def work(conn, tally):
            made = create(conn, tally, steps, catch, queue, now)
            self._workflows_due(conn, tally, now)  # a first step that is a batch: maybe done
            return made
        return self._write("creating a chain", work)

    def chain(self, chain_id: int):
        found = rows(self._cursor(f"reading chain {chain_id}", SQL["chain_row"], (chain_id,)))
        return record(found[0]) if found else None
