"""The HTTP server's limits on a real ``python -m service`` process (uvicorn, real sockets).

A half-sent request (headers or body) is closed after its timeout instead of held open for
as long as the client likes; healthy keep-alive connections, slow-but-steady headers,
server-sent events and WebSockets live on; connections beyond the cap are answered 503.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync import client as ws_client

from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

TIMEOUT = 1.0
MAX_CONNECTIONS = 24


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    logs = tmp_path_factory.mktemp("limits")
    env = {
        "FORECAST_HTTP_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
        "FORECAST_HTTP_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
        "FORECAST_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "FORECAST_SSE_KEEPALIVE_SECONDS": "0.3",
    }
    with ServiceProcess(env, log=logs / "service.log") as process:
        yield process


def connect(service: ServiceProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=10.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start = time.monotonic()
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - start


def test_half_sent_headers_are_closed_after_the_timeout(service: ServiceProcess) -> None:
    with connect(service) as sock:
        sock.sendall(b"PUT /v1/streams/slow HTTP/1.1\r\nHost: test\r\nContent-Le")
        answer, took = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert TIMEOUT * 0.8 <= took <= TIMEOUT + 4.0


def test_a_connection_that_sends_nothing_is_closed(service: ServiceProcess) -> None:
    with connect(service) as sock:
        answer, took = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert took <= TIMEOUT + 4.0


def test_half_sent_body_is_a_408_in_the_apis_form_and_changes_nothing(
    service: ServiceProcess,
) -> None:
    body = json.dumps({"model": "demo-lstm"}).encode()
    with connect(service) as sock:
        sock.sendall(
            b"PUT /v1/streams/half HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (len(body) + 50)
            + body
        )
        answer, took = until_closed(sock)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"application/problem+json" in head.lower()
    assert json.loads(payload)["code"] == "request-timeout"
    assert TIMEOUT * 0.8 <= took <= TIMEOUT + 4.0
    assert httpx.get(f"{service.url}/v1/streams/half").status_code == 404


def test_three_hundred_half_sent_requests_are_all_closed(service: ServiceProcess) -> None:
    """The attack of the issue: none of them outlives the timeout by much."""
    socks = [connect(service) for _ in range(300)]
    try:
        for sock in socks:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: te")
        deadline = time.monotonic() + TIMEOUT + 10.0
        for sock in socks:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            answer, _ = until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408")
    finally:
        for sock in socks:
            sock.close()


def test_slow_but_steady_headers_and_keep_alive_are_served(service: ServiceProcess) -> None:
    with connect(service) as sock:
        request = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"
        for i in range(0, len(request), 8):  # the whole request within the timeout
            sock.sendall(request[i : i + 8])
            time.sleep(TIMEOUT / 10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(TIMEOUT * 1.5)  # idle between requests: uvicorn's keep-alive (5 s) rules
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_event_streams_and_websockets_outlive_the_timeouts(service: ServiceProcess) -> None:
    model = httpx.get(f"{service.url}/v1/models").json()["models"][0]["name"]
    assert httpx.put(f"{service.url}/v1/streams/long", json={"model": model}).is_success
    heard: list[str] = []
    with httpx.stream("GET", f"{service.url}/v1/streams/long/forecasts", timeout=10.0) as r:
        assert r.status_code == 200
        start = time.monotonic()
        for line in r.iter_lines():
            heard.append(line)
            if time.monotonic() - start > TIMEOUT * 3:
                break
    assert heard[0] == "event: snapshot"
    assert heard.count(": keep-alive") >= 3
    with ws_client.connect(f"ws://127.0.0.1:{service.port}/v1/ws", open_timeout=10) as ws:
        time.sleep(TIMEOUT * 2)
        ws.send(json.dumps({"id": 1, "stream_id": "nope", "observations": []}))
        assert json.loads(ws.recv(timeout=10))["id"] == 1


def test_connections_beyond_the_cap_are_answered_503(service: ServiceProcess) -> None:
    """Open connections, each served and then idle in keep-alive, until one is refused: that
    happens at the cap (uvicorn counts the connection asking too), and while the served ones
    stay open every new one is refused; once they close, requests are served again."""
    held: list[socket.socket] = []
    try:
        while len(held) <= MAX_CONNECTIONS:
            sock = connect(service)
            held.append(sock)
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
            if sock.recv(65536).startswith(b"HTTP/1.1 503"):
                break
        served = len(held) - 1
        assert MAX_CONNECTIONS - 3 <= served < MAX_CONNECTIONS, served
        for _ in range(3):
            assert httpx.get(f"{service.url}/health/live").status_code == 503
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10.0
    while httpx.get(f"{service.url}/health/live").status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover below the cap"
        time.sleep(0.1)
