"""The WebSocket message rate limit: refused messages are answered 429 and change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from service.app import create_app
from service.settings import Settings

T0 = 1_800_000_000.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message(i: int, stream: str = "r1") -> str:
    return json.dumps(
        {
            "id": f"m{i}",
            "stream_id": stream,
            "observations": [{"timestamp": T0 + 3600 * i, "values": [1.0 + i, 20.0]}],
        }
    )


@contextmanager
def serving(repository: Path, rate: float, burst: int) -> Iterator[TestClient[Any]]:
    """The app with one demo-lstm stream ``r1`` and the given WebSocket rate limit."""
    settings = Settings(
        model_repository=repository,
        providers="cpu",
        ws_max_messages_per_second=rate,
        ws_message_burst=burst,
    )
    with TestClient(app=create_app(settings)) as c:
        assert c.put("/v1/streams/r1", json={"model": "demo-lstm"}).status_code == 201
        yield c


@pytest.fixture
def client(model_repository: Path) -> Iterator[TestClient[Any]]:
    # A token every 100 s: nothing refills while the test runs, however slow the machine.
    with serving(model_repository, rate=0.01, burst=3) as c:
        yield c


def test_messages_over_the_rate_get_429_and_are_not_applied(client: TestClient[Any]) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        for i in range(3):
            ws.send_text(message(i))
            assert json.loads(ws.receive_text())["status"] == 200
        ws.send_text(message(3))
        refused = json.loads(ws.receive_text())
        assert refused["status"] == 429
        assert refused["id"] == "m3"
        assert refused["error"]["code"] == "rate-limited"
        assert refused["error"]["retry_after"] >= 1
        ws.send_text("{not json, still counted")
        assert json.loads(ws.receive_text())["status"] == 429
    stream = client.get("/v1/streams/r1").json()
    assert stream["seq"] == 3
    assert stream["last_timestamp"] == iso(T0 + 3600 * 2)


def test_a_sender_that_keeps_going_is_closed_with_1008(client: TestClient[Any]) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        for i in range(3):
            ws.send_text(message(i))
            assert json.loads(ws.receive_text())["status"] == 200
        for i in range(3, 6):  # a burst's worth of refusals is tolerated ...
            ws.send_text(message(i))
            assert json.loads(ws.receive_text())["status"] == 429
        ws.send_text(message(6))  # ... one more is not
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1008
    assert client.get("/v1/streams/r1").json()["seq"] == 3


def test_each_connection_has_its_own_allowance(client: TestClient[Any]) -> None:
    for _ in range(2):
        with client.websocket_connect("/v1/ws") as ws:
            ws.send_text(message(0, stream="r1"))
            assert json.loads(ws.receive_text())["status"] == 200


def test_a_zero_rate_turns_the_limit_off(model_repository: Path) -> None:
    with serving(model_repository, rate=0, burst=1) as c, c.websocket_connect("/v1/ws") as ws:
        for i in range(10):
            ws.send_text(message(i))
            assert json.loads(ws.receive_text())["status"] == 200
