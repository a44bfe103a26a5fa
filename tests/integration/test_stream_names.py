"""Stream ids of any text, on every interface and every store backend.

Names users give their sensors, MQTT-style paths, non-ASCII, spaces, and the characters the
key layout escapes: each is one stream, reached the same way over REST (percent-encoded, '/'
included), bulk, WebSocket and server-sent events, kept under its own key in the store, and
never confused with another.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from litestar.testing import AsyncTestClient
from websockets.sync import client as ws_client

from service.app import create_app
from service.settings import Settings
from service.state import open_store
from service.state.base import StateStore
from service.state.keys import stream_key
from tests.support.service_process import ServiceProcess
from tests.support.sse import subscribed

T0 = 1_800_000_000.0
NAMES = [
    "Kühlhaus 3",
    "plant/line-1/temp",
    "/leading/and/trailing/",
    "a//double",
    "{tag}",
    "}{",
    "100%",
    "a%2Fb",  # the text itself, not an encoded '/'
    "observations",
    "x/observations",
    "x/forecasts",
    "sensor-\u03b1",
    "\U0001f321 ?#&=+",
]


def path(name: str, suffix: str = "") -> str:
    return f"/v1/streams/{quote(name, safe='')}{suffix}"


def reading(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [1.0 + i, 20.0]}


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StateStore]:
    opened = open_store(store_url, timeout_seconds=2.0)
    opened.url = store_url  # type: ignore[attr-defined]
    try:
        yield opened
    finally:
        await opened.close()


async def test_every_name_is_its_own_stream_on_every_interface(
    model_repository: Any, store: StateStore
) -> None:
    url: str = store.url  # type: ignore[attr-defined]
    settings = Settings(model_repository=model_repository, providers="cpu", store_url=url)
    app = create_app(settings, store=store if url == "memory://" else None)
    async with AsyncTestClient(app=app) as client:
        for name in NAMES:
            r = await client.put(path(name), json={"model": "demo-lstm", "history": [reading(0)]})
            assert r.status_code == 201, (name, r.text)
            assert r.json()["stream_id"] == name
        for k, name in enumerate(NAMES):
            body = {"observations": [reading(1)]}
            r = await client.post(path(name, "/observations"), json=body)
            assert r.status_code == 200, (name, r.text)
            assert (r.json()["stream_id"], r.json()["seq"]) == (name, 2)
            bulk = {"streams": [{"id": k, "stream_id": name, "observations": [reading(2)]}]}
            r = await client.post("/v1/observations", json=bulk)
            (answer,) = r.json()["results"]
            assert (answer["status"], answer["id"], answer["stream_id"]) == (200, k, name)
        for name in NAMES:
            r = await client.get(path(name))
            assert (r.json()["stream_id"], r.json()["seq"]) == (name, 3), name
            # Each is kept under its own key, the one the layout gives it.
            assert await store.get(stream_key("fcst", "default", name)) is not None
        assert (await client.get(path("x"))).status_code == 404  # not "x/observations"
        for name in NAMES:
            assert (await client.delete(path(name))).status_code == 204
            assert (await client.get(path(name))).status_code == 404
            assert await store.get(stream_key("fcst", "default", name)) is None


def test_the_websocket_and_event_streams_take_any_name(
    model_repository: Any, tmp_path: Any
) -> None:
    """Over a real server (uvicorn decodes the path itself) and real clients."""
    env = {"FORECAST_MODEL_REPOSITORY": str(model_repository)}
    with ServiceProcess(env, log=tmp_path / "service.log") as service:
        for name in NAMES:
            r = httpx.put(service.url + path(name), json={"model": "demo-gru"})
            assert r.status_code == 201, (name, r.text)
        url = f"ws://127.0.0.1:{service.port}/v1/ws"
        with ws_client.connect(url, open_timeout=10) as ws:
            for k, name in enumerate(NAMES):
                ws.send(json.dumps({"id": k, "stream_id": name, "observations": [reading(0)]}))
                answer = json.loads(ws.recv(timeout=10))
                assert (answer["id"], answer["status"], answer["stream_id"]) == (k, 200, name)
        for name in NAMES:
            with subscribed(service.url + path(name, "/forecasts"), 2) as events:
                r = httpx.post(
                    service.url + path(name, "/observations"),
                    json={"observations": [reading(1)]},
                )
                assert r.status_code == 200, (name, r.text)
            snapshot, update = (event["data"] for event in events)
            assert (snapshot["stream_id"], snapshot["seq"]) == (name, 1)
            assert (update["stream_id"], update["seq"]) == (name, 2)
