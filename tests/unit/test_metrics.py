"""Metrics and MetricsServer, driven by a real selector loop in the test's own thread."""

from __future__ import annotations

import errno
import math
import selectors
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.config.init_file import default_config_text
from runtime.config.load import config_from_dict
from runtime.errors import ConfigError
from runtime.supervisor.metrics import JOB_BUCKETS, Metrics, MetricsServer, parse_listen


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed: dict, name: str, **labels) -> float:
    return parsed[(name, frozenset(labels.items()))]


def turn(selector, timeout: float = 0.01) -> None:
    """One turn of the supervisor's loop, as far as "call" keys go."""
    for key, mask in selector.select(timeout):
        kind, obj, _ = key.data
        assert kind == "call"
        obj(mask)


def exchange(selector, port: int, request: bytes, turns: int = 300) -> bytes:
    """Send `request`, run loop turns, return all the server sent before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request)
        client.setblocking(False)
        data = b""
        for _ in range(turns):
            turn(selector)
            try:
                chunk = client.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                return data
            data += chunk
    raise AssertionError(f"the server did not close the connection; got {data[:200]!r}")


def closed_by_server(client: socket.socket) -> bool:
    try:
        return client.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture
def loop():
    selector = selectors.DefaultSelector()
    metrics = Metrics()
    server = MetricsServer("127.0.0.1:0", metrics, selector)
    yield selector, metrics, server
    server.close()
    assert not selector.get_map()
    selector.close()


# -- Metrics ----------------------------------------------------------------------


def test_render_counts_what_was_recorded():
    metrics = Metrics()
    metrics.job_finished("default", "succeeded", 0.003)
    metrics.job_finished("default", "succeeded", 0.5)
    metrics.job_finished("default", "failed", 700.0)
    metrics.job_finished("high", "timeout", 60.0)
    metrics.worker_restarted("default", "max_jobs")
    metrics.worker_restarted("default", "scaled down")
    metrics.worker_restarted("default", "max_jobs")
    metrics.storage_round_trip("exchange", 0.0004)
    metrics.set_queue_depths({"default": {"pending": 5, "delayed": 1, "running": 2}})
    metrics.set_workers([{"pid": 11, "pool": "default", "state": "busy", "jobs": 3, "rss": 1000},
                         {"pid": 12, "pool": "default", "state": "idle", "jobs": 0, "rss": 2000},
                         {"pid": 13, "pool": "other", "state": "killed", "jobs": 9, "rss": 3000}])
    parsed = samples(metrics.render().decode())

    assert value(parsed, "jobrt_jobs_total", queue="default", outcome="succeeded") == 2
    assert value(parsed, "jobrt_jobs_total", queue="default", outcome="failed") == 1
    assert value(parsed, "jobrt_jobs_total", queue="default", outcome="crashed") == 0  # starts at 0
    assert value(parsed, "jobrt_jobs_total", queue="high", outcome="timeout") == 1
    assert value(parsed, "jobrt_job_duration_seconds_count", queue="default") == 3
    assert value(parsed, "jobrt_job_duration_seconds_sum", queue="default") == pytest.approx(700.503)
    assert value(parsed, "jobrt_job_duration_seconds_bucket", queue="default", le="0.005") == 1
    assert value(parsed, "jobrt_job_duration_seconds_bucket", queue="default", le="0.5") == 2
    assert value(parsed, "jobrt_job_duration_seconds_bucket", queue="default", le="600.0") == 2
    assert value(parsed, "jobrt_job_duration_seconds_bucket", queue="default", le="+Inf") == 3
    assert value(parsed, "jobrt_worker_restarts_total", pool="default", reason="max_jobs") == 2
    assert value(parsed, "jobrt_worker_restarts_total", pool="default", reason="scaled down") == 1
    assert value(parsed, "jobrt_worker_restarts_total", pool="default", reason="crash") == 0
    assert value(parsed, "jobrt_storage_round_trip_seconds_bucket", operation="exchange", le="0.0005") == 1
    assert value(parsed, "jobrt_storage_round_trip_seconds_bucket", operation="exchange", le="0.00025") == 0
    assert value(parsed, "jobrt_queue_jobs", queue="default", state="pending") == 5
    assert value(parsed, "jobrt_queue_jobs", queue="default", state="failed") == 0
    assert value(parsed, "jobrt_workers", pool="default", state="busy") == 1
    assert value(parsed, "jobrt_workers", pool="default", state="idle") == 1
    assert value(parsed, "jobrt_workers", pool="other", state="stopping") == 1
    assert value(parsed, "jobrt_worker_rss_bytes", pool="default", pid="12") == 2000
    assert ("process_open_fds", frozenset()) in parsed  # the supervisor's own figures come along


def test_balanced_pools_show_their_target_per_queue():
    metrics = Metrics()
    metrics.set_targets({"default": {"queues": ["a", "b"], "workers": 5, "balance": "auto",
                                     "max_workers": 10, "targets": {"a": 4, "b": 1}},
                         "plain": {"queues": ["c"], "workers": 2, "balance": "off"}})
    parsed = samples(metrics.render().decode())
    assert value(parsed, "jobrt_pool_target_workers", pool="default", queue="a") == 4
    assert value(parsed, "jobrt_pool_target_workers", pool="default", queue="b") == 1
    assert not [key for key in parsed if key[0] == "jobrt_pool_target_workers" and ("pool", "plain") in key[1]]


def test_gone_workers_and_queues_drop_out():
    metrics = Metrics()
    metrics.set_workers([{"pid": 11, "pool": "default", "state": "busy", "jobs": 3, "rss": 1000}])
    metrics.set_queue_depths({"old": {"pending": 1}})
    metrics.set_workers([])
    metrics.set_queue_depths({"new": {"pending": 2}})
    parsed = samples(metrics.render().decode())
    assert not [key for key in parsed if key[0] == "jobrt_worker_rss_bytes"]
    assert value(parsed, "jobrt_workers", pool="default", state="busy") == 0  # the pool stays, at 0
    assert ("jobrt_queue_jobs", frozenset({"queue": "old", "state": "pending"})) not in parsed
    assert value(parsed, "jobrt_queue_jobs", queue="new", state="pending") == 2


@pytest.mark.parametrize("seconds", [0.0, 0.001, 0.0010001, 1.0, 599.9, 600.0, 601.0, -1.0, math.nan])
def test_histogram_buckets_hold_what_is_at_most_their_bound(seconds):
    metrics = Metrics()
    metrics.job_finished("q", "succeeded", seconds)
    parsed = samples(metrics.render().decode())
    kept = seconds if seconds >= 0 else 0.0  # NaN and negative count as 0 s
    for bound in JOB_BUCKETS:
        expected = 1 if kept <= bound else 0
        assert value(parsed, "jobrt_job_duration_seconds_bucket", queue="q", le=str(bound)) == expected
    assert value(parsed, "jobrt_job_duration_seconds_sum", queue="q") == kept


# -- MetricsServer ----------------------------------------------------------------------


def test_get_metrics_serves_the_exposition(loop):
    selector, metrics, server = loop
    metrics.job_finished("default", "succeeded", 0.01)
    host, port = server.address
    assert host == "127.0.0.1" and port > 0  # port 0 picked a free one
    response = exchange(selector, port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert f"Content-Type: {Metrics.content_type}".encode() in head
    assert f"Content-Length: {len(body)}".encode() in head
    parsed = samples(body.decode())
    assert value(parsed, "jobrt_jobs_total", queue="default", outcome="succeeded") == 1
    assert value(parsed, "jobrt_job_duration_seconds_count", queue="default") == 1


def test_a_large_answer_to_a_slow_reader_is_written_in_pieces(loop):
    selector, metrics, server = loop
    for i in range(100):
        metrics.job_finished(f"queue-{i}", "succeeded", 0.01)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with client:
        client.connect(server.address)
        turn(selector)
        (conn,) = server._connections.values()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # so that one send falls short
        client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        for _ in range(5):
            turn(selector)
        assert selector.get_key(conn.sock).events == selectors.EVENT_WRITE  # waiting to write the rest
        client.setblocking(False)
        data = b""
        for _ in range(2000):
            turn(selector, 0.001)
            try:
                chunk = client.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert len(body) > 100_000 and f"Content-Length: {len(body)}\r\n".encode() in head
    assert value(samples(body.decode()), "jobrt_jobs_total", queue="queue-99", outcome="succeeded") == 1


def test_health_404_405_and_400(loop):
    selector, _, server = loop
    port = server.address[1]
    for path in (b"/", b"/healthz"):
        assert exchange(selector, port, b"GET " + path + b" HTTP/1.0\r\n\r\n").endswith(b"\r\n\r\nok\n")
    head = exchange(selector, port, b"HEAD /healthz HTTP/1.0\n\n")  # bare LFs are accepted
    assert head.startswith(b"HTTP/1.0 200")
    assert head.endswith(b"Content-Length: 3\r\nConnection: close\r\n\r\n")
    assert exchange(selector, port, b"GET /nope HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 404 ")
    assert exchange(selector, port, b"POST /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 405 ")
    assert exchange(selector, port, b"garbage\r\n\r\n").startswith(b"HTTP/1.0 400 ")


def test_request_sent_in_pieces(loop):
    selector, _, server = loop
    with socket.create_connection(server.address, timeout=5) as client:
        for piece in (b"GET /healthz HTTP/1.0\r", b"\nHost: x\r\n\r", b"\n"):
            client.sendall(piece)
            for _ in range(3):
                turn(selector)
        client.settimeout(5)
        assert client.recv(4096).startswith(b"HTTP/1.0 200 OK")


def test_oversized_headers_get_431(loop):
    selector, _, server = loop
    request = b"GET /metrics HTTP/1.0\r\n" + b"X-Filler: " + b"a" * 9000 + b"\r\n\r\n"
    assert exchange(selector, server.address[1], request).startswith(b"HTTP/1.0 431 ")
    endless = b"GET /metrics HTTP/1.0\r\n" + b"X: y\r\n" * 2000  # never ends its headers
    assert exchange(selector, server.address[1], endless).startswith(b"HTTP/1.0 431 ")


def test_slow_client_is_expired(loop):
    selector, _, server = loop
    with socket.create_connection(server.address, timeout=5) as client:
        client.sendall(b"GET /metrics HTTP/1.0\r\n")  # and never the blank line
        client.setblocking(False)
        for _ in range(5):
            turn(selector)
        server.expire(time.monotonic())
        assert not closed_by_server(client)  # not yet past its deadline
        server.expire(time.monotonic() + 10)
        assert closed_by_server(client)
    assert len(selector.get_map()) == 1  # only the listening socket is left


def test_connections_beyond_the_limit_are_closed_at_once():
    selector = selectors.DefaultSelector()
    server = MetricsServer("127.0.0.1:0", Metrics(), selector, max_connections=2)
    clients = [socket.create_connection(server.address, timeout=5) for _ in range(3)]
    try:
        for client in clients:
            client.setblocking(False)
        for _ in range(5):
            turn(selector)
        assert [closed_by_server(c) for c in clients] == [False, False, True]
        clients[0].sendall(b"GET / HTTP/1.0\r\n\r\n")  # the others still get answers
        for _ in range(5):
            turn(selector)
        assert clients[0].recv(4096).startswith(b"HTTP/1.0 200")
    finally:
        for client in clients:
            client.close()
        server.close()
    assert not selector.get_map()


def test_a_failing_render_answers_500_and_the_loop_goes_on(loop, caplog):
    selector, metrics, server = loop

    def broken():
        raise RuntimeError("boom")

    metrics.render = broken
    response = exchange(selector, server.address[1], b"GET /metrics HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.0 500 ")
    assert "cannot render the metrics" in caplog.text
    assert exchange(selector, server.address[1], b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 ")


def test_out_of_file_descriptors_pauses_accepting(loop, caplog):
    selector, _, server = loop
    real = server._sock

    class NoFds:  # the listening socket of a process at its fd limit
        fileno = real.fileno

        def accept(self):
            raise OSError(errno.EMFILE, "Too many open files")

    server._sock = NoFds()
    with socket.create_connection(server.address, timeout=5) as client:
        turn(selector)
        assert not selector.get_map()  # no busy loop on a listener that stays readable
        assert "Too many open files" in caplog.text
        server._sock = real
        server.expire(time.monotonic())
        assert not selector.get_map()  # still pausing
        server.expire(time.monotonic() + 2)
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")
        for _ in range(5):
            turn(selector)
        assert client.recv(4096).startswith(b"HTTP/1.0 200")


# -- addresses ----------------------------------------------------------------------------


def test_remote_addresses_need_allow_remote():
    selector = selectors.DefaultSelector()
    with pytest.raises(ConfigError, match="allow_remote") as caught:
        MetricsServer("0.0.0.0:0", Metrics(), selector, path="supervisor.toml")
    assert str(caught.value).startswith("supervisor.toml: metrics.listen: 0.0.0.0:0 can be reached")
    server = MetricsServer("0.0.0.0:0", Metrics(), selector, allow_remote=True)
    assert server.address[1] > 0
    server.close()


@pytest.mark.parametrize("listen", ["", "9464", "localhost", "example.com:9464", "::1:9464",
                                    "[127.0.0.1]:9464", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:-1"])
def test_bad_addresses_are_config_errors(listen):
    with pytest.raises(ConfigError, match="metrics.listen: "):
        MetricsServer(listen, Metrics(), selectors.DefaultSelector())


def test_a_port_in_use_is_a_config_error(loop):
    _, metrics, server = loop
    with pytest.raises(ConfigError, match="already in use"):
        MetricsServer(f"127.0.0.1:{server.address[1]}", metrics, selectors.DefaultSelector())


def test_parse_listen():
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("localhost:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9464") == ("::1", 9464)


def test_ipv6_loopback():
    selector = selectors.DefaultSelector()
    try:
        server = MetricsServer("[::1]:0", Metrics(), selector)
    except ConfigError as err:
        pytest.skip(f"no IPv6 loopback here: {err}")
    assert server.address[0] == "::1" and server.address[1] > 0
    server.close()


# -- the [metrics] settings -------------------------------------------------------------------


def test_metrics_settings():
    config = config_from_dict({})
    assert config.metrics_listen == "" and config.metrics_allow_remote is False
    config = config_from_dict({"metrics": {"listen": "[::1]:9464", "allow_remote": True}})
    assert config.metrics_listen == "[::1]:9464" and config.metrics_allow_remote is True
    with pytest.raises(ConfigError, match=r"^supervisor.toml: metrics.listen: must be HOST:PORT"):
        config_from_dict({"metrics": {"listen": "example.com:80"}}, path="supervisor.toml")
    with pytest.raises(ConfigError, match="metrics.listen: "):
        config_from_dict({"metrics": {"listen": 9464}})
    assert "[metrics]" in default_config_text()
