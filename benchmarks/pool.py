"""Pool benchmark: runtime.Pool against ProcessPoolExecutor and multiprocessing.Pool.

    python3 benchmarks/pool.py                       # 100000 tiny tasks, then the hostile run
    python3 benchmarks/pool.py --quick               # 20000 tiny tasks, 10 s budget
    options: --tasks 100000 --workers 2 --timeout 2 --budget 20 --submits 20000 --repeat 1

Part 1, throughput: `tiny(x) = x + 1` over --tasks inputs, for each contender
and chunksize. Each row gets a fresh pool, warmed by a 100-item map, so the
time runs from the start of map to the last result consumed; with --repeat,
the best of several maps on that pool counts. chunksize=1 rows of the stdlib
pools run on at most 10000 inputs (they manage ~7k/s). jobrt runs with its
per-call --timeout enforced, adaptively chunked and at the chunksize that
served the stdlib pools best. Every map's sum is checked.

Part 2, hostile tasks: 1000 calls where #500 sleeps an hour and #700 segfaults
its process. Each contender runs in its own session (this script again, with
--contender), printing a line per result, and is killed with all its
processes when --budget runs out; the table says what each delivered.

Part 3, submit and resumable runs: --submits futures of `tiny`, one submit
each, on ProcessPoolExecutor and jobrt; then jobrt's map of --tasks calls
with storage= (a fresh SQLite record file), and the same map run again, when
every call is answered from the record.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime import JobFailed, Pool  # noqa: E402

WARMUP = 100
SLOW_CAP = 10000  # chunksize=1 on the stdlib pools: 100k inputs would take ~15 s each
CHUNKSIZES = (1, 10, 100, 1000)
HOSTILE_TASKS, HANGS, CRASHES = 1000, 500, 700
PPE, MP, JOBRT = "ProcessPoolExecutor.map", "multiprocessing.Pool.imap", "jobrt Pool.map"


def tiny(x):
    return x + 1


def hostile(x):
    if x == HANGS:
        time.sleep(3600)
    if x == CRASHES:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def open_pool(contender: str, args):
    if contender == PPE:
        return ProcessPoolExecutor(args.workers)
    if contender == MP:
        return multiprocessing.Pool(args.workers)
    return Pool(workers=args.workers, timeout=args.timeout)


def mapped(contender: str, pool, fn, inputs, chunksize, **options):
    if contender == MP:
        return pool.imap(fn, inputs, chunksize=chunksize)
    return pool.map(fn, inputs, chunksize=chunksize, **options)


# -- part 1 ------------------------------------------------------------------------------
def measure(contender: str, chunksize, args) -> dict:
    tasks = min(args.tasks, SLOW_CAP) if chunksize == 1 else args.tasks
    expected = tasks * (tasks - 1) // 2 + tasks
    best = float("inf")
    with open_pool(contender, args) as pool:
        # chunksize 1 so every worker has started and run a call before the clock starts
        sum(mapped(contender, pool, tiny, range(WARMUP), 1))
        for _ in range(args.repeat):
            started = time.perf_counter()
            total = sum(mapped(contender, pool, tiny, range(tasks), chunksize))
            seconds = time.perf_counter() - started
            if total != expected:
                raise SystemExit(f"{contender} chunksize={chunksize}: sum {total}, expected {expected}")
            best = min(best, seconds)
    note = f"only {tasks} tasks: chunksize 1 is slow" if tasks < args.tasks else ""
    return {"contender": contender, "chunksize": chunksize, "tasks": tasks, "seconds": best,
            "rate": tasks / best, "note": note}


def throughput(args) -> None:
    rows = [measure(contender, chunksize, args) for contender in (PPE, MP) for chunksize in CHUNKSIZES]
    fixed = max(rows, key=lambda row: row["rate"])["chunksize"]
    rows += [measure(JOBRT, None, args), measure(JOBRT, fixed, args)]
    best = {}
    for row in rows:
        if row["rate"] > best.get(row["contender"], {"rate": 0})["rate"]:
            best[row["contender"]] = row
    print(f"Part 1: throughput, tiny(x) = x + 1, {args.workers} workers, pools warmed first, "
          f"best of {args.repeat}; jobrt with timeout={args.timeout:g} s")
    print(f"  {'contender':<27}{'chunksize':>10}{'tasks':>9}{'seconds':>10}{'tasks/s':>11}")
    for row in rows:
        mark = "*" if best[row["contender"]] is row else " "
        chunk = "adaptive" if row["chunksize"] is None else row["chunksize"]
        print(f"  {row['contender']:<27}{chunk:>10}{row['tasks']:>9}{row['seconds']:>10.3f}"
              f"{row['rate']:>11,.0f} {mark} {row['note']}".rstrip())
    print(f"  * best-tuned row of each contender; jobrt's fixed chunksize ({fixed}) is the best stdlib one")
    adaptive, ppe = rows[-2], best[PPE]
    print(f"jobrt adaptive vs best ProcessPoolExecutor.map (chunksize {ppe['chunksize']}): "
          f"{adaptive['rate'] / ppe['rate']:.2f}x the tasks/s")


# -- part 2 ------------------------------------------------------------------------------
def hostile_child(contender: str, args) -> None:
    """Runs in the child: one JSON line per result as it arrives, then one saying how it ended."""
    with open_pool(contender, args) as pool:
        options = {"errors": "return"} if contender == JOBRT else {}
        chunksize = None if contender == JOBRT else 10
        started = time.perf_counter()
        end = {"end": "completed"}
        try:
            for index, value in enumerate(mapped(contender, pool, hostile, range(HOSTILE_TASKS),
                                                 chunksize, **options)):
                line = {"i": index, "t": round(time.perf_counter() - started, 3)}
                if isinstance(value, JobFailed):
                    line.update(reason=value.reason, error=value.error)
                elif value != index:
                    line.update(reason="wrong", error=f"returned {value!r}")
                print(json.dumps(line), flush=True)
        except Exception as exc:  # noqa: BLE001 - how it broke is the measurement
            end = {"end": f"{type(exc).__name__} raised"}
        end["t"] = round(time.perf_counter() - started, 3)
        if contender == JOBRT:
            end["stats"] = pool.stats
        print(json.dumps(end), flush=True)


def session_members(sid: int) -> list[int]:
    """Live processes of the session; zombies are dead already, only not yet reaped."""
    members = []
    for entry in os.listdir("/proc"):
        try:
            # the command name may hold spaces: the fields count from after its ")"
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue  # not a process, or it just exited
        if int(fields[3]) == sid and fields[0] not in "ZX":
            members.append(int(entry))
    return members


def kill_session(sid: int) -> int:
    """SIGKILL the session and wait until it is gone; return how many were alive besides its
    leader. jobrt workers sit in process groups of their own: killpg alone would miss them."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    alive = [pid for pid in session_members(sid) if pid != sid]
    deadline = time.monotonic() + 5
    while members := session_members(sid):
        if time.monotonic() > deadline:
            raise SystemExit(f"processes {members} of a benchmark child survived SIGKILL")
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    return len(alive)


def run_hostile(contender: str, args) -> dict:
    command = [sys.executable, __file__, "--contender", contender, "--workers", str(args.workers),
               "--timeout", str(args.timeout)]
    started = time.perf_counter()
    # a session of its own, so everything the contender forked can be found and killed
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    strays = 0
    try:
        out, err = child.communicate(timeout=args.budget)
        killed = False
        strays = kill_session(child.pid)  # workers that outlived a leader that did exit
    except subprocess.TimeoutExpired:
        killed = True
        kill_session(child.pid)
        out, err = child.communicate()
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    results = [line for line in lines if "i" in line]
    end = next((line for line in lines if "end" in line), None)
    failures = [line for line in results if "reason" in line]
    delivered = len(results) - len(failures)
    if end is not None:
        outcome, seconds = f"{end['end']} after {len(results)} results", end["t"]
        if killed:
            outcome += "; then hung on exit, killed"
    elif killed:
        last = f"; last at {results[-1]['t']:.2f} s" if results else ""
        outcome, seconds = f"hung after {len(results)} results{last}; killed at budget", wall
    else:
        tail = err.strip().splitlines()[-1:] or ["no output"]
        outcome, seconds = f"exited {child.returncode}: {tail[0][:60]}", wall
    if strays:
        outcome += f"; {strays} processes outlived it, killed"
    return {"contender": contender, "delivered": delivered, "failures": failures, "outcome": outcome,
            "seconds": seconds, "stats": end.get("stats") if end else None}


def hostile_tasks(args) -> None:
    rows = [run_hostile(contender, args) for contender in (JOBRT, PPE, MP)]
    print(f"Part 2: {HOSTILE_TASKS} hostile tasks, {args.workers} workers: #{HANGS} hangs, #{CRASHES} "
          f"segfaults; jobrt adaptive with timeout={args.timeout:g} s, the others chunksize 10; "
          f"budget {args.budget:g} s")
    print(f"  {'contender':<27}{'delivered':>10}  {'failures reported':<24}{'wall s':>8}  outcome")
    for row in rows:
        failed = ", ".join(f"#{line['i']} {line['reason']}" for line in row["failures"]) or "none"
        print(f"  {row['contender']:<27}{row['delivered']:>10}  {failed:<24}{row['seconds']:>8.2f}  "
              f"{row['outcome']}")
    for row in rows:
        for line in row["failures"]:
            print(f"  {row['contender']} #{line['i']} {line['reason']}: {line['error']}")
        if row["stats"]:
            print(f"  {row['contender']} stats: {row['stats']}")


# -- part 3 ------------------------------------------------------------------------------
def submitted(contender: str, args) -> float:
    with open_pool(contender, args) as pool:
        sum(mapped(contender, pool, tiny, range(WARMUP), 1))
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            futures = [pool.submit(tiny, i) for i in range(args.submits)]
            total = sum(future.result() for future in futures)
            best = min(best, time.perf_counter() - started)
            if total != args.submits * (args.submits + 1) // 2:
                raise SystemExit(f"{contender} submit: wrong sum {total}")
    return args.submits / best


def recorded(args) -> tuple[float, float, dict]:
    expected = args.tasks * (args.tasks + 1) // 2
    rates = []
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(2):
            with Pool(workers=args.workers, timeout=args.timeout,
                      storage=f"sqlite:///{directory}/run.db") as pool:
                started = time.perf_counter()
                total = sum(pool.map(tiny, range(args.tasks)))
                rates.append(args.tasks / (time.perf_counter() - started))
                stats = pool.stats
            if total != expected:
                raise SystemExit(f"jobrt storage= map: wrong sum {total}")
    return rates[0], rates[1], stats


def submits_and_records(args) -> None:
    print(f"Part 3: {args.submits} submits of tiny, one future each, best of {args.repeat}; "
          f"then {args.tasks} calls with storage=, twice")
    ppe, jobrt = submitted(PPE, args), submitted(JOBRT, args)
    print(f"  ProcessPoolExecutor.submit {ppe:>11,.0f} futures/s")
    print(f"  jobrt Pool.submit          {jobrt:>11,.0f} futures/s  ({jobrt / ppe:.2f}x)")
    first, again, stats = recorded(args)
    print(f"  jobrt Pool.map, storage=   {first:>11,.0f} calls/s, first run (every call recorded)")
    print(f"  jobrt Pool.map, storage=   {again:>11,.0f} calls/s, run again (skipped: {stats['skipped']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, help="tiny tasks in part 1 (default 100000, 20000 with --quick)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=2.0, help="jobrt's per-call timeout, seconds")
    parser.add_argument("--budget", type=float, help="seconds each hostile run may take (default 20, 10 with --quick)")
    parser.add_argument("--submits", type=int, help="futures in part 3 (default 20000, 5000 with --quick)")
    parser.add_argument("--repeat", type=int, default=1, help="maps per throughput row; the best counts")
    parser.add_argument("--quick", action="store_true", help="a fast sanity run")
    parser.add_argument("--contender", choices=(JOBRT, PPE, MP), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        hostile_child(args.contender, args)
        return
    args.tasks = args.tasks or (20000 if args.quick else 100000)
    args.budget = args.budget or (10.0 if args.quick else 20.0)
    args.submits = args.submits or (5000 if args.quick else 20000)
    throughput(args)
    print()
    hostile_tasks(args)
    print()
    submits_and_records(args)


if __name__ == "__main__":
    main()
