"""Keys and tenant isolation on the streaming interfaces: the WebSocket and server-sent events.

The same guard as REST: no key is refused, a read key cannot write over the WebSocket, and a
tenant neither reaches nor hears another tenant's stream of the same id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync import client as ws_client

from service.app import create_app
from service.settings import ApiKeyEntry, Settings
from service.state.keys import stream_key
from tests.support.service_process import ServiceProcess
from tests.support.sse import (
    A_READ,
    A_WRITE,
    B_WRITE,
    TENANT_KEYS,
    check_tenant_isolation,
)

T0 = 1_800_000_000.0
KEYS = TENANT_KEYS


def obs(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [1.0 + 0.1 * i, 20.0]}


@pytest.fixture
def client(model_repository: Path) -> Iterator[TestClient[Any]]:
    settings = Settings(
        model_repository=model_repository,
        providers="cpu",
        api_keys=[ApiKeyEntry.model_validate(k) for k in KEYS],
    )
    with TestClient(app=create_app(settings)) as c:
        yield c


def raw(client: TestClient[Any], tenant: str, stream: str) -> bytes | None:
    store = client.app.state.forecaster.store
    result: bytes | None = client.blocking_portal.call(
        store.get, stream_key("fcst", tenant, stream)
    )
    return result


REFUSALS = [
    ({}, 4401, "API key is required"),
    ({"X-API-Key": "not-a-key-0000000000"}, 4401, "not valid"),
    (A_READ, 4403, "'read' role"),
]


@pytest.mark.parametrize(("headers", "code", "reason"), REFUSALS)
def test_websocket_refuses_no_key_a_wrong_key_and_a_read_key(
    client: TestClient[Any], headers: dict[str, str], code: int, reason: str
) -> None:
    assert client.put("/v1/streams/pump", json={"model": "demo-lstm"}, headers=A_WRITE).is_success
    with client.websocket_connect("/v1/ws", headers=headers) as ws:
        ws.send_text(json.dumps({"stream_id": "pump", "observations": [obs(0)]}))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == code
        assert reason in closed.value.detail
    assert client.get("/v1/streams/pump", headers=A_READ).json()["seq"] == 0


def test_a_real_websocket_client_can_tell_a_missing_key_from_a_weak_role(
    model_repository: Path, tmp_path: Path
) -> None:
    """Over a real server and a real client (websockets): the close code and its reason, not
    an HTTP 403 at the handshake, say why a socket was refused; a write key is served."""
    env = {
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
        "FORECAST_API_KEYS": json.dumps(KEYS),
    }
    with ServiceProcess(env, log=tmp_path / "service.log") as service:
        url = f"ws://127.0.0.1:{service.port}/v1/ws"
        for headers, code, reason in REFUSALS:
            with ws_client.connect(url, additional_headers=headers, open_timeout=10) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=10)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == code
                assert reason in closed.value.rcvd.reason
        r = httpx.put(
            f"{service.url}/v1/streams/pump", json={"model": "demo-lstm"}, headers=A_WRITE
        )
        assert r.status_code == 201
        with ws_client.connect(url, additional_headers=A_WRITE, open_timeout=10) as ws:
            ws.send(json.dumps({"id": "w", "stream_id": "pump", "observations": [obs(0)]}))
            answer = json.loads(ws.recv(timeout=10))
        assert (answer["id"], answer["status"]) == ("w", 200)


def test_websocket_reaches_only_the_tenants_own_streams(client: TestClient[Any]) -> None:
    r = client.put(
        "/v1/streams/pump", json={"model": "demo-lstm", "history": [obs(0)]}, headers=A_WRITE
    )
    assert r.status_code == 201
    acme = raw(client, "acme", "pump")
    with client.websocket_connect("/v1/ws", headers=B_WRITE) as ws:
        ws.send_text(json.dumps({"id": "b1", "stream_id": "pump", "observations": [obs(1)]}))
        answer = json.loads(ws.receive_text())
        assert answer["status"] == 404  # acme's stream does not exist for beta
        assert raw(client, "acme", "pump") == acme
        assert client.put(
            "/v1/streams/pump", json={"model": "demo-gru"}, headers=B_WRITE
        ).is_success
        ws.send_text(json.dumps({"id": "b2", "stream_id": "pump", "observations": [obs(1)]}))
        answer = json.loads(ws.receive_text())
        assert answer["status"] == 200
        assert answer["result"]["model"]["name"] == "demo-gru"
    assert raw(client, "acme", "pump") == acme
    assert client.get("/v1/streams/pump", headers=A_READ).json()["seq"] == 1
    assert client.get("/v1/streams/pump", headers=B_WRITE).json()["seq"] == 1


def test_sse_needs_a_key_and_sees_no_other_tenants_stream(client: TestClient[Any]) -> None:
    assert client.put("/v1/streams/pump", json={"model": "demo-lstm"}, headers=A_WRITE).is_success
    r = client.get("/v1/streams/pump/forecasts")
    assert r.status_code == 401
    r = client.get("/v1/streams/pump/forecasts", headers=B_WRITE)
    assert r.status_code == 404


def test_sse_subscriber_hears_only_its_tenants_updates(
    model_repository: Path, tmp_path: Path
) -> None:
    """A read key subscribes to acme's ``pump``; beta writing its own ``pump`` is not heard."""
    env = {
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
        "FORECAST_API_KEYS": json.dumps(KEYS),
    }
    with ServiceProcess(env, log=tmp_path / "service.log") as service:
        check_tenant_isolation(service.url, service.url, reading=obs, settle=0.5)
