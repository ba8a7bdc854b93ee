"""runtime.Pool, embedded: real forked workers, real pipes, run from this test process."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sys
import threading
import time

import pytest

from runtime import JobFailed, JobrtError, Pool, attempt as current_attempt, release
from runtime.config.settings import SETTINGS
from runtime.workers import retry_rules
from tests.conftest import alive, wait_for

SAFETY = 60  # seconds a wait may take before the test fails instead of hanging


def square(x):
    return x * x


def add(a, b=0):
    return a + b


def boom(x):
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def hang_on(bad):
    def call(x):
        if x == bad:
            time.sleep(3600)
        return x
    return call


def segfault(x):
    if x == 5:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def hard_exit(x):
    if x == 2:
        os._exit(0)
    return x


def calls_sys_exit(x):
    sys.exit(4)


def flaky(x):
    if current_attempt() < 2:
        raise RuntimeError("first try fails")
    return x


def always_release(x):
    release(0)


def release_twice(x):
    if current_attempt() < 3:
        release(0)
    return (x, current_attempt())


def pid(_):
    return os.getpid()


HOG = []


def hog(x):
    HOG.append(bytearray(64 << 20))  # kept: the worker grows by 64 MiB per call
    for page in range(0, len(HOG[-1]), 4096):
        HOG[-1][page] = 1
    return x


class Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(a)


def raise_unpicklable(x):
    raise Unpicklable("odd", "exception")


def hog_pid(x):
    hog(x)
    return os.getpid()


def returns_lambda(x):
    return (lambda: x) if x == 1 else x


def shout(x):
    print(f"hello from call {x}")
    print(f"complaint from call {x}", file=sys.stderr)
    return x


def test_submit_returns_a_future_that_as_completed_understands():
    with Pool(2) as pool:
        futures = [pool.submit(add, i, b=10) for i in range(20)]
        done = {f.result() for f in concurrent.futures.as_completed(futures, timeout=SAFETY)}
    assert done == {i + 10 for i in range(20)}


def test_map_keeps_input_order_across_adaptive_chunks():
    with Pool(2) as pool:
        assert list(pool.map(square, range(20000))) == [x * x for x in range(20000)]
        assert list(pool.map(add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]
        assert list(pool.map(square, [])) == []


def test_unordered_map_yields_every_result_once():
    with Pool(2) as pool:
        assert sorted(pool.map(square, range(5000), ordered=False)) == [x * x for x in range(5000)]


def test_functions_made_after_the_workers_started_run_too():
    with Pool(2) as pool:
        assert pool.submit(square, 3).result(SAFETY) == 9
        offset = 100

        def closure(x):
            return x + offset

        class Counter:
            base = 7

            def plus(self, x):
                return self.base + x

        assert list(pool.map(closure, range(3))) == [100, 101, 102]
        assert list(pool.map(lambda x: -x, range(3))) == [0, -1, -2]
        assert pool.submit(Counter().plus, 1).result(SAFETY) == 8


def test_a_raised_exception_comes_back_with_its_traceback_and_the_pool_goes_on():
    with Pool(2) as pool:
        with pytest.raises(JobFailed) as caught:
            list(pool.map(boom, range(10)))
        failure = caught.value
        assert failure.reason == "error"
        assert "ValueError: bad item 3" in failure.error
        assert "boom(3)" in str(failure)
        assert "in boom" in failure.traceback and "raise ValueError" in failure.traceback
        assert isinstance(failure.exception, ValueError) and failure.__cause__ is failure.exception
        assert any("remote traceback" in note for note in failure.__notes__)
        assert pool.submit(square, 4).result(SAFETY) == 16


def test_errors_return_gives_failures_as_values_in_place():
    with Pool(2, errors="return") as pool:
        results = list(pool.map(boom, range(6)))
        future = pool.submit(boom, 3)
        assert isinstance(future.result(SAFETY), JobFailed)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]
    assert isinstance(results[3], JobFailed)


def test_an_unpicklable_exception_still_reports_its_text_and_traceback():
    with Pool(1) as pool:
        failure = pool.submit(raise_unpicklable, 1).exception(SAFETY)
    assert isinstance(failure, JobFailed) and failure.reason == "error"
    assert "Unpicklable: odd" in failure.error and "raise Unpicklable" in failure.traceback
    assert failure.exception is None


def test_a_hung_call_is_killed_at_its_timeout_and_only_it_fails():
    # Every call shares the timeout: it is thousands of times what the others take, so only
    # a machine stalled for seconds could kill one (the hung call costs about twice it).
    with Pool(2, timeout=3, errors="return") as pool:
        results = list(pool.map(hang_on(57), range(200)))
        stats = pool.stats
    failed = {i: r for i, r in enumerate(results) if isinstance(r, JobFailed)}
    assert list(failed) == [57]
    assert failed[57].reason == "timeout" and "timed out after 3 s" in failed[57].error
    assert [r for r in results if not isinstance(r, JobFailed)] == [x for x in range(200) if x != 57]
    assert stats["restarts"]["timeout"] >= 1


@pytest.mark.parametrize("fn, bad, reason, text", [
    (segfault, 5, "signal", "SIGSEGV"),
    (hard_exit, 2, "crash", "without reporting a result"),
])
def test_a_call_that_kills_its_worker_fails_alone(fn, bad, reason, text):
    with Pool(2, errors="return") as pool:
        results = list(pool.map(fn, range(50)))
        restarts = pool.stats["restarts"]
    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, JobFailed)]
    assert [i for i, _ in failures] == [bad]
    assert failures[0][1].reason == reason and text in failures[0][1].error
    assert restarts.get(reason, 0) >= 1  # the replaced worker is filed under the same word


def test_sys_exit_in_a_call_is_an_error_not_a_dead_pool():
    with Pool(1) as pool:
        failure = pool.submit(calls_sys_exit, 1).exception(SAFETY)
        assert pool.submit(square, 2).result(SAFETY) == 4
    assert failure.reason == "error" and "sys.exit(4)" in failure.error


def test_tries_retry_a_call_until_it_succeeds():
    with Pool(2, tries=3) as pool:
        assert list(pool.map(flaky, range(10))) == list(range(10))
        assert pool.submit(flaky, "x").result(SAFETY) == "x"
        assert pool.stats["retried"] >= 11


def test_tries_run_out_with_the_count_in_the_error():
    with Pool(1, tries=2) as pool:
        failure = pool.submit(boom, 3).exception(SAFETY)
    assert failure.attempts == 2 and "(attempt 2 of 2)" in failure.error


def test_release_uses_up_a_try_so_tries_bound_it():
    with Pool(1, tries=2, errors="return") as pool:
        failure = pool.submit(always_release, "x").result(SAFETY)
        mapped = list(pool.map(always_release, range(5), chunksize=5))
    assert isinstance(failure, JobFailed) and failure.reason == "error" and failure.attempts == 2
    assert failure.error == f"{retry_rules.RELEASED_LAST} (attempt 2 of 2)"
    assert [m.error for m in mapped] == [failure.error] * 5


def test_a_call_released_before_its_last_try_runs_again():
    with Pool(2, tries=3) as pool:
        assert pool.submit(release_twice, "x").result(SAFETY) == ("x", 3)
        assert list(pool.map(release_twice, range(6))) == [(i, 3) for i in range(6)]


def test_max_jobs_recycles_workers_counting_calls_not_chunks():
    with Pool(2, max_jobs=50) as pool:
        pids = set(pool.map(pid, range(2000)))
        restarts = pool.stats["restarts"]
    assert len(pids) >= 2000 // 55  # 50 calls a worker, plus up to 10% jitter
    assert restarts["max_jobs"] >= 10


def test_max_memory_recycles_a_worker_that_grew():
    with Pool(1, max_memory_mb=100) as pool:
        pids = [pool.submit(hog_pid, i).result(SAFETY) for i in range(4)]
        assert pool.stats["restarts"]["max_memory"] >= 1
    assert len(set(pids)) >= 2


def grow_forever(megabytes):
    block = bytearray(megabytes << 20)
    for page in range(0, len(block), 4096):  # resident only once touched
        block[page] = 1
    time.sleep(3600)


def test_a_call_past_memory_limit_is_killed_and_the_pool_goes_on():
    with Pool(1, memory_limit_mb=150, errors="return") as pool:
        failure = pool.submit(grow_forever, 400).result(SAFETY)
        assert pool.submit(square, 3).result(SAFETY) == 9
        assert pool.stats["restarts"]["memory"] == 1
    assert failure.reason == "memory" and "over memory_limit_mb (150 MiB)" in failure.error


def test_memory_limit_counts_what_a_worker_owns_not_what_it_shares_with_a_big_script():
    script_data = bytearray(300 << 20)  # the workers fork with it: resident in them, but shared
    for page in range(0, len(script_data), 4096):
        script_data[page] = 1
    with Pool(2, memory_limit_mb=150) as pool:
        assert list(pool.map(time.sleep, [0.3] * 4, chunksize=1)) == [None] * 4  # several memory checks each
        assert list(pool.map(square, range(1000))) == [x * x for x in range(1000)]
        assert "memory" not in pool.stats["restarts"] and "max_memory" not in pool.stats["restarts"]
    del script_data


def test_map_reads_its_input_only_a_window_ahead():
    pulled = []

    def source():
        for i in range(10000):
            pulled.append(i)
            yield i

    prefetch = next(s.default for s in SETTINGS if s.name == "prefetch")
    with Pool(2) as pool:
        results = pool.map(square, source(), chunksize=1)
        for consumed, _ in enumerate(results, 1):
            # window: workers * (prefetch + 1) + 2 chunks of one item each
            assert len(pulled) <= consumed + 2 * (prefetch + 1) + 2
            if consumed == 100:
                break


def test_a_map_never_iterated_runs_when_the_pool_shuts_down(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with Pool(2) as pool:
        pool.map(lambda i: (marks / str(i)).touch(), range(50))
    assert len(os.listdir(marks)) == 50


def test_an_abandoned_map_stops_feeding(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with Pool(2) as pool:
        for i in pool.map(lambda i: (marks / str(i)).touch() or i, range(10000), chunksize=1):
            if i == 20:
                break
    assert 20 < len(os.listdir(marks)) < 10000


def test_a_cancelled_future_never_runs(tmp_path):
    started, gate, ran = tmp_path / "started", tmp_path / "gate", tmp_path / "ran"

    def wait_for_gate(_):
        started.touch()
        wait_for(gate.exists, SAFETY, "the test to open the gate")
        return "released"

    with Pool(1) as pool:
        blocker = pool.submit(wait_for_gate, 0)
        # Submitted while the only worker runs a call of unknown length: a busy pool takes
        # nothing more (nothing is sent ahead), so this call is still queued when cancelled.
        wait_for(started.exists, what="the blocking call to start")
        later = pool.submit(lambda: ran.touch())
        assert later.cancel(), "a queued call could not be cancelled"
        gate.touch()
        assert blocker.result(SAFETY) == "released"
    assert later.cancelled() and not ran.exists()


def test_shutdown_with_cancel_futures_cancels_what_has_not_started_and_lets_running_calls_finish(tmp_path):
    started, gate = tmp_path / "started", tmp_path / "gate"

    def held(x):
        started.touch()
        while not gate.exists():
            time.sleep(0.01)
        return x

    pool = Pool(1)
    running = pool.submit(held, "finished")
    queued = [pool.submit(square, i) for i in range(3)]
    mapped = pool.map(square, range(100), chunksize=1)
    wait_for(started.exists, what="the first call to start")
    pool.shutdown(wait=False, cancel_futures=True)
    # As with ProcessPoolExecutor, calls already sent ahead to a worker count as running.
    wait_for(queued[-1].cancelled, what="the queued calls to be cancelled")
    assert not running.done()
    gate.touch()
    assert running.result(SAFETY) == "finished"
    for i, future in enumerate(queued):
        assert future.cancelled() or future.result(SAFETY) == i * i
    pool._loop.thread.join(SAFETY)
    assert not pool._loop.thread.is_alive() and not pool._loop.pool.workers
    with pytest.raises(JobrtError, match="cancelled|shut down"):
        list(mapped)


def test_terminate_kills_running_calls_and_cancels_the_rest():
    pool = Pool(2)
    running = [pool.submit(time.sleep, 3600) for _ in range(2)]
    queued = [pool.submit(square, i) for i in range(3)]
    pool.terminate()
    for future in running + queued:
        assert future.cancelled() or future.exception(SAFETY).reason == "cancelled"
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(square, 1)


def test_an_exception_through_with_kills_the_workers():
    with pytest.raises(KeyError):
        with Pool(2) as pool:
            future = pool.submit(time.sleep, 3600)
            pool.submit(square, 1).result(SAFETY)
            raise KeyError("the script failed")
    assert future.exception(SAFETY).reason == "cancelled"
    assert not pool._loop.pool.workers


def test_arguments_and_results_that_do_not_pickle_fail_only_their_call():
    lock = threading.Lock()
    with Pool(2, errors="return") as pool:
        results = list(pool.map(str, [1, lock, 3]))
        back = list(pool.map(returns_lambda, [0, 1, 2]))
    assert results[0] == "1" and results[2] == "3"
    assert results[1].reason == "error" and "could not be pickled" in results[1].error
    assert back[0] == 0 and back[2] == 2 and "result could not be pickled" in back[1].error


def test_what_calls_print_goes_to_the_scripts_own_stdout_and_stderr(capfd):
    with Pool(1) as pool:
        list(pool.map(shout, range(300)))
    out, err = capfd.readouterr()
    assert out.splitlines() == [f"hello from call {i}" for i in range(300)]
    assert err.splitlines() == [f"complaint from call {i}" for i in range(300)]


@pytest.mark.parametrize("kwargs, text", [
    ({"workers": 0}, "Pool(workers=0): must be an integer from 1 to 1024"),
    ({"timeout": -1}, "Pool(timeout=-1)"),
    ({"tries": 0}, "Pool(tries=0)"),
    ({"backoff": "soon"}, "Pool(backoff='soon')"),
    ({"errors": "ignore"}, "must be 'raise' or 'return'"),
])
def test_bad_settings_are_refused_with_the_setting_named(kwargs, text):
    with pytest.raises(ValueError) as caught:
        Pool(**kwargs)
    assert text in str(caught.value)


def test_bad_calls_are_refused_at_once():
    with Pool(1) as pool:
        with pytest.raises(TypeError, match="must be callable"):
            pool.submit(3)
        with pytest.raises(ValueError, match="chunksize"):
            pool.map(square, [1], chunksize=0)
        with pytest.raises(TypeError, match="at least one iterable"):
            pool.map(square)


def nap(x):
    time.sleep(0.2)  # the work: a fifth of the timeout on its own
    return x


def test_calls_within_their_timeout_are_not_killed_for_sharing_a_chunk():
    # 8 naps of 0.2 s take 1.6 s together, past the 1 s timeout a lone call gets; the chunk
    # gets the timeout plus as much again for each other call, 8 s (6 s to spare).
    with Pool(1, timeout=1) as pool:
        assert list(pool.map(nap, range(8), chunksize=8)) == list(range(8))
        assert pool.stats["restarts"] == {}


def big_result(size):
    return bytes(size)


def test_oversized_arguments_and_results_fail_only_their_call():
    with Pool(1, errors="return") as pool:
        small, huge = pool.map(big_result, [10, 70 << 20])
        too_big = pool.submit(len, bytes(65 << 20)).result(SAFETY)
        assert pool.submit(len, b"fine").result(SAFETY) == 4
    assert small == bytes(10)
    assert huge.reason == "error" and "write it to a file and return the path" in huge.error
    assert too_big.reason == "error" and "pass a file path instead" in too_big.error


def test_processes_a_call_started_are_killed_with_the_pool_even_escaped_ones(tmp_path):
    from jobs.examples import escape_and_hang

    pid_file = tmp_path / "escaped.pid"
    with Pool(1, timeout=60) as pool:
        future = pool.submit(escape_and_hang, str(pid_file))
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the call to start its child")
        escaped = int(pid_file.read_text())
        pool.terminate()
    assert future.exception(SAFETY).reason == "cancelled"
    assert not alive(escaped)  # dead by the time the pool has ended, not soon after


def doubled(x):
    return 2 * x


def inner_pool(n, pid_dir=None, hang=False):
    def work(x):
        if hang:
            (pid_dir / str(os.getpid())).touch()
            time.sleep(3600)
        return doubled(x)

    with Pool(2) as inner:
        if hang:  # once both inner workers run a call, grow past the outer memory_limit_mb
            for x in range(n):  # one call for each inner worker: they never end
                inner.submit(work, x)
            wait_for(lambda: len(os.listdir(pid_dir)) == 2, SAFETY, "both inner workers to start")
            grow_forever(400)
        return sum(inner.map(work, range(n), chunksize=1))


def test_a_pool_inside_a_call_works_and_its_workers_die_with_the_call(tmp_path):
    with Pool(2) as pool:
        assert list(pool.map(inner_pool, [10, 100])) == [90, 9900]
    with Pool(1, memory_limit_mb=150, errors="return") as pool:  # the call is killed mid-run
        [hung] = pool.map(inner_pool, [2], [tmp_path], [True])
    assert hung.reason == "memory"
    inner_workers = [int(name) for name in os.listdir(tmp_path)]
    assert len(inner_workers) == 2
    # They die with the thread that forked them (PR_SET_PDEATHSIG), which the SIGKILL ended.
    wait_for(lambda: not any(map(alive, inner_workers)), what="the inner pool's workers to die")


def test_a_map_iterated_after_shutdown_says_so_instead_of_hanging():
    with Pool(1) as pool:
        results = pool.map(square, range(10))
        next(results)  # started, then abandoned by the shutdown
    with pytest.raises(JobrtError, match="shut down"):
        list(results)
