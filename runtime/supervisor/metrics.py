"""Prometheus metrics of one supervisor, and the small HTTP server that serves them.

    supervisor loop --job_finished / worker_restarted / storage_round_trip--> Metrics (plain counts)
                    --set_queue_depths / set_workers (snapshots)------------>    |
    Prometheus --GET /metrics--> MetricsServer (in the loop's selector) --render()--+

`Metrics` keeps plain numbers and turns them into prometheus_client metric
families only when scraped. The supervisor calls it once per job, tens of
thousands of times a second, from its one thread, so the hot path pays for a
dict lookup and a bisect, not for prometheus_client's per-value locks:
job_finished costs about 0.3 us, against 1.2 us with cached prometheus_client
children and 2.7 us with a labels() lookup per call.

`MetricsServer` answers `GET /metrics` (and `/`, `/healthz` with "ok") without
ever blocking the loop: its sockets are non-blocking and registered in the
supervisor's selector with `key.data = ("call", callback, None)`; the loop
calls `callback(mask)`, which never raises.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import selectors
import socket
import time
from bisect import bisect_left

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, GCCollector, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from runtime.errors import ConfigError

log = logging.getLogger("jobrt")

OUTCOMES = ("succeeded", "failed", "retried", "released", "timeout", "memory", "crashed", "cancelled")
QUEUE_STATES = ("pending", "delayed", "running", "failed")
WORKER_STATES = ("busy", "idle", "stopping")
TICK_OUTCOMES = ("enqueued", "skipped", "missed")
RESTART_REASONS = ("timeout", "memory", "signal", "crash", "boot", "max_jobs", "max_time", "max_memory",
                   "scaled down", "cancel")
JOB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
               30.0, 60.0, 120.0, 300.0, 600.0)  # seconds: 1 ms .. 10 min
STORAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)  # seconds: 0.1 ms .. 5 s

KEY = "metrics.listen"  # the setting named in errors
MAX_REQUEST = 8192  # bytes of request line + headers
MAX_CONNECTIONS = 32
CLIENT_TIMEOUT = 5.0  # seconds a client gets to send its request and read the answer
ACCEPT_PAUSE = 1.0  # seconds without accepting after running out of file descriptors
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large", 500: "Internal Server Error"}


class _Histogram:
    """Bucket counts and a sum for one label set."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # counts[i]: bounds[i-1] < x <= bounds[i]; last: +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        if not seconds >= 0:  # NaN or negative would poison the sum for good
            seconds = 0.0
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


class Metrics:
    """The supervisor's metrics, in a registry of its own (never the global default one)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self._finished: dict[tuple[str, str], list] = {}  # (queue, outcome) -> [count, duration histogram]
        self._durations: dict[str, _Histogram] = {}  # by queue
        self._restarts: dict[tuple[str, str], int] = {}  # (pool, reason) -> count
        self._round_trips: dict[str, _Histogram] = {}  # by storage operation
        self._depths: dict[str, dict[str, int]] = {}
        self._workers: list[dict] = []
        self._pools: dict[str, None] = {}  # every pool seen: one left without workers shows zeros
        self._ticks: dict[tuple[str, str], int] = {}  # (schedule, outcome) -> ticks
        self._targets: dict[tuple[str, str], int] = {}  # (pool, queue) -> workers, balanced pools
        self.registry = CollectorRegistry()
        self.registry.register(self)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)  # the supervisor's own CPU, memory, fds, GC

    def job_finished(self, queue: str, outcome: str, seconds: float) -> None:
        """One run of a job ended (outcome: one of OUTCOMES) after `seconds`. The hot path."""
        cell = self._finished.get((queue, outcome))
        if cell is None:
            # A new queue: every outcome starts at 0, so its first failure shows as an increase.
            durations = self._durations.setdefault(queue, _Histogram(JOB_BUCKETS))
            for name in (*OUTCOMES, outcome):
                self._finished.setdefault((queue, name), [0, durations])
            cell = self._finished[(queue, outcome)]
        cell[0] += 1
        cell[1].observe(seconds)

    def worker_restarted(self, pool: str, reason: str) -> None:
        """A worker was recycled or replaced (reason: one of RESTART_REASONS)."""
        if (pool, reason) not in self._restarts:
            for name in (*RESTART_REASONS, reason):
                self._restarts.setdefault((pool, name), 0)
        self._restarts[(pool, reason)] += 1

    def schedule_ticked(self, schedule: str, outcome: str, ticks: int = 1) -> None:
        """Ticks of a schedule this supervisor recorded: enqueued, skipped (overlap) or
        missed (catch-up); the ticks other supervisors recorded are theirs to count."""
        if (schedule, outcome) not in self._ticks:
            for name in (*TICK_OUTCOMES, outcome):
                self._ticks.setdefault((schedule, name), 0)
        self._ticks[(schedule, outcome)] += ticks

    def storage_round_trip(self, operation: str, seconds: float) -> None:
        """One call to storage (exchange, settle, heartbeat, ...) took `seconds`."""
        histogram = self._round_trips.get(operation)
        if histogram is None:
            histogram = self._round_trips[operation] = _Histogram(STORAGE_BUCKETS)
        histogram.observe(seconds)

    def set_queue_depths(self, counts: dict[str, dict[str, int]]) -> None:
        """Jobs per queue and state (pending, delayed, running, failed), as storage counts them."""
        self._depths = {queue: dict(states) for queue, states in counts.items()}

    def set_workers(self, workers: list[dict]) -> None:
        """The live workers, as WorkerPool.describe_workers() gives them; gone ones drop out."""
        self._workers = [dict(worker) for worker in workers]
        for worker in workers:
            self._pools.setdefault(worker["pool"], None)

    def set_targets(self, pools: dict[str, dict]) -> None:
        """The balanced pools' workers per queue, from WorkerPool.describe() by pool name."""
        self._targets = {(name, queue): n for name, pool in pools.items()
                         for queue, n in (pool.get("targets") or {}).items()}

    def render(self) -> bytes:
        """The Prometheus text exposition, to be served with `content_type`."""
        return generate_latest(self.registry)

    def collect(self):
        """The registry calls this at each scrape: the numbers as metric families."""
        workers = {(pool, state): 0 for pool in self._pools for state in WORKER_STATES}
        for worker in self._workers:
            state = "stopping" if worker["state"] == "killed" else worker["state"]  # killed: on its way out
            if (worker["pool"], state) in workers:
                workers[(worker["pool"], state)] += 1
        return [
            _family(CounterMetricFamily, "jobrt_jobs", "Job runs that ended, by queue and outcome",
                    ("queue", "outcome"), {key: cell[0] for key, cell in self._finished.items()}),
            _histograms("jobrt_job_duration_seconds", "How long job runs took, in seconds",
                        "queue", self._durations),
            _family(GaugeMetricFamily, "jobrt_queue_jobs", "Jobs in storage by queue and state",
                    ("queue", "state"), {(queue, state): states.get(state, 0)
                                         for queue, states in self._depths.items() for state in QUEUE_STATES}),
            _family(GaugeMetricFamily, "jobrt_workers", "Worker processes by pool and state",
                    ("pool", "state"), workers),
            _family(GaugeMetricFamily, "jobrt_pool_target_workers", "Workers a balanced pool (balance "
                    "= simple or auto) aims to give each queue now", ("pool", "queue"), self._targets),
            _family(GaugeMetricFamily, "jobrt_worker_rss_bytes", "Resident memory of each worker, in bytes",
                    ("pool", "pid"), {(w["pool"], str(w["pid"])): w.get("rss") or 0 for w in self._workers}),
            _family(CounterMetricFamily, "jobrt_worker_restarts", "Workers recycled or replaced, by pool "
                    "and reason", ("pool", "reason"), self._restarts),
            _family(CounterMetricFamily, "jobrt_schedule_ticks", "Schedule ticks this supervisor "
                    "recorded, by schedule and outcome (enqueued, skipped, missed)",
                    ("schedule", "outcome"), self._ticks),
            _histograms("jobrt_storage_round_trip_seconds", "How long calls to storage took, in seconds",
                        "operation", self._round_trips),
        ]


def _family(kind, name: str, doc: str, labels: tuple[str, ...], values: dict):
    family = kind(name, doc, labels=labels)
    for key, value in values.items():
        family.add_metric(key, value)
    return family


def _histograms(name: str, doc: str, label: str, histograms: dict[str, _Histogram]):
    family = HistogramMetricFamily(name, doc, labels=(label,))
    for key, histogram in histograms.items():
        cumulative, buckets = 0, []
        for bound, count in zip((*map(floatToGoString, histogram.bounds), "+Inf"), histogram.counts):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric((key,), buckets, histogram.total)
    return family


def parse_listen(text: str) -> tuple[str, int]:
    """Split "HOST:PORT" ("[IPv6]:PORT"; localhost = 127.0.0.1; port 0 = any free port) into
    an IP address and a port. Host names are refused: resolving one could block.
    Raises ValueError with a message fit for ConfigError."""
    host, sep, port = text.rpartition(":")
    try:
        if not sep or not (port.isascii() and port.isdigit()):
            raise ValueError
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host.strip("[]"))
        if (host.startswith("[") and host.endswith("]")) != (address.version == 6):
            raise ValueError
    except ValueError:
        raise ValueError(f'must be HOST:PORT with HOST an IP address (an IPv6 one in brackets), '
                         f'such as 127.0.0.1:9464 or [::1]:9464, got "{text}"') from None
    if int(port) > 65535:
        raise ValueError(f'the port must be from 0 to 65535, got "{text}"')
    return str(address), int(port)


class _Connection:
    __slots__ = ("sock", "data", "deadline", "inbuf", "outbuf")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.data = None  # its key.data in the selector
        self.deadline = deadline
        self.inbuf = bytearray()
        self.outbuf: memoryview | None = None  # the answer, once there is one


class MetricsServer:
    """An HTTP/1.0 server for Prometheus inside the supervisor's selector loop.

    Listens on `listen` ("HOST:PORT"); a non-loopback address needs `allow_remote`,
    since anyone who reaches it reads the metrics. Errors raise ConfigError naming
    `path` (the config file) and metrics.listen. `address` is the bound (host, port).
    The loop calls `expire(now)` (monotonic seconds) from its periodic work.
    """

    def __init__(self, listen: str, metrics: Metrics, selector: selectors.BaseSelector, *,
                 allow_remote: bool = False, path: str | None = None,
                 max_connections: int = MAX_CONNECTIONS, timeout: float = CLIENT_TIMEOUT):
        try:
            host, port = parse_listen(listen)
        except ValueError as err:
            raise ConfigError(str(err), path, KEY) from None
        if not allow_remote and not ipaddress.ip_address(host).is_loopback:
            raise ConfigError(f"{listen} can be reached from other hosts and metrics have no "
                              f"authentication; listen on 127.0.0.1:{port} or [::1]:{port}, or set "
                              f"metrics.allow_remote = true", path, KEY)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart without waiting out TIME_WAIT
            sock.bind((host, port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError as err:
            sock.close()
            if err.errno == errno.EADDRINUSE:
                raise ConfigError(f"{listen} is already in use; choose another port (0 = any free one)",
                                  path, KEY) from None
            raise ConfigError(f"cannot listen on {listen}: {err.strerror or err}", path, KEY) from None
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self._sock, self._metrics, self._selector = sock, metrics, selector
        self._max_connections, self._timeout = max_connections, timeout
        self._connections: dict[int, _Connection] = {}  # by fd
        self._paused_until: float | None = None
        selector.register(sock, selectors.EVENT_READ, ("call", self._on_accept, None))

    def expire(self, now: float) -> None:
        """Close connections past their deadline; accept again after a pause."""
        for conn in [c for c in self._connections.values() if c.deadline <= now]:
            log.debug("metrics: closing a client that took longer than %g s", self._timeout)
            self._close(conn)
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._selector.register(self._sock, selectors.EVENT_READ, ("call", self._on_accept, None))

    def close(self) -> None:
        """Stop listening and drop every connection."""
        for conn in list(self._connections.values()):
            self._close(conn)
        if self._paused_until is None:
            self._selector.unregister(self._sock)
        self._sock.close()

    # -- callbacks: they never raise ---------------------------------------------------
    def _on_accept(self, mask: int) -> None:
        for _ in range(16):  # a burst of clients must not hold up the loop
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.warning("metrics: cannot accept a connection: %s", err.strerror or err)
                if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # the waiting client keeps the socket readable: stop watching it for a while
                    self._selector.unregister(self._sock)
                    self._paused_until = time.monotonic() + ACCEPT_PAUSE
                return
            try:
                now = time.monotonic()
                if len(self._connections) >= self._max_connections:
                    self.expire(now)
                if len(self._connections) >= self._max_connections:
                    sock.close()  # too many at once: a scraper retries, a flood gets nothing
                    continue
                sock.setblocking(False)
                conn = _Connection(sock, now + self._timeout)
                conn.data = ("call", functools.partial(self._on_event, conn), None)
                self._selector.register(sock, selectors.EVENT_READ, conn.data)
                self._connections[sock.fileno()] = conn
            except Exception:
                log.exception("metrics: cannot take a connection; closing it")
                sock.close()

    def _on_event(self, conn: _Connection, mask: int) -> None:
        try:
            if conn.outbuf is None:
                self._read(conn)
            else:
                self._write(conn)
        except Exception:
            log.exception("metrics: error while serving a client; closing its connection")
            self._close(conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        start = max(0, len(conn.inbuf) - 3)  # the blank line may straddle two reads
        conn.inbuf += data
        end = _end_of_head(conn.inbuf, start)
        if end < 0 and len(conn.inbuf) <= MAX_REQUEST:
            return  # wait for the rest
        if end < 0 or end > MAX_REQUEST:
            self._respond(conn, 431, b"request headers too large\n")
        else:
            self._respond(conn, *self._answer(bytes(conn.inbuf[:end])))

    def _answer(self, head: bytes) -> tuple[int, bytes, str, bool]:
        """(status, body, content type, head only) for one request."""
        parts = head.split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return 400, b"bad request\n", "text/plain", False
        method, path = parts[0], parts[1].split(b"?", 1)[0]
        if path not in (b"/metrics", b"/", b"/healthz"):
            return 404, b"not found; metrics are at /metrics\n", "text/plain", False
        if method not in (b"GET", b"HEAD"):
            return 405, b"only GET and HEAD\n", "text/plain", False
        if path != b"/metrics":
            return 200, b"ok\n", "text/plain", method == b"HEAD"
        try:
            body = self._metrics.render()
        except Exception:
            log.exception("metrics: cannot render the metrics")
            return 500, b"cannot render the metrics; see the supervisor's log\n", "text/plain", False
        return 200, body, self._metrics.content_type, method == b"HEAD"

    def _respond(self, conn: _Connection, status: int, body: bytes, content_type: str = "text/plain",
                 head_only: bool = False) -> None:
        head = (f"HTTP/1.0 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        conn.outbuf = memoryview(head if head_only else head + body)
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn.data)  # stop reading
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            conn.outbuf = conn.outbuf[conn.sock.send(conn.outbuf):]
        except (BlockingIOError, InterruptedError):
            return  # the rest when the socket has room
        except OSError:  # the client went away
            conn.outbuf = conn.outbuf[:0]
        if not conn.outbuf:
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        if self._connections.pop(conn.sock.fileno(), None) is None:
            return
        self._selector.unregister(conn.sock)
        try:
            # Ends the connection even if a worker forked just now still holds a copy of the fd.
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.sock.close()


def _end_of_head(buf: bytearray, start: int) -> int:
    """Where the request's blank line ends (CRLF or bare LF), or -1."""
    crlf, lf = buf.find(b"\r\n\r\n", start), buf.find(b"\n\n", start)
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf + 2
    return crlf + 4 if crlf >= 0 else -1
