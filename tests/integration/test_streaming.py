"""Bulk observe, the WebSocket and server-sent events, with batching on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient, TestClient

from service.app import create_app
from service.settings import Settings
from tests.support.service_process import ServiceProcess
from tests.support.sse import subscribed

T0 = 1_800_000_000.0


def obs(i: int, scale: float = 1.0) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [scale * np.sin(i / 3), 20.0 - i * 0.1]}


def settings(repository: Path, **overrides: Any) -> Settings:
    return Settings(model_repository=repository, providers="cpu", **overrides)


@pytest.fixture
async def client(model_repository: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings(model_repository))) as c:
        yield c


async def test_concurrent_observes_equal_sequential_ones(
    client: AsyncTestClient[Any], model_repository: Path
) -> None:
    """Requests that share batches give each the forecast after its own observations."""
    streams = [f"c{i}" for i in range(12)]
    for i, s in enumerate(streams):
        await client.put(f"/v1/streams/{s}", json={"model": "demo-lstm" if i % 2 else "demo-gru"})

    async def feed(s: str, k: int) -> list[Any]:
        out = []
        for i in range(6):
            r = await client.post(
                f"/v1/streams/{s}/observations", json={"observations": [obs(i, scale=k)]}
            )
            assert r.status_code == 200, r.text
            out.append(r.json()["forecast"])
        return out

    concurrent = await asyncio.gather(*(feed(s, k) for k, s in enumerate(streams)))
    async with AsyncTestClient(app=create_app(settings(model_repository))) as fresh:
        for k in range(len(streams)):
            model = "demo-lstm" if k % 2 else "demo-gru"
            series = {
                "series": [
                    {"observations": [obs(i, scale=k) for i in range(n + 1)]} for n in range(6)
                ]
            }
            r = await fresh.post(f"/v1/models/{model}/forecast", json=series)
            for got, want in zip(concurrent[k], r.json()["forecasts"], strict=True):
                a = [list(step["quantiles"].values()) for step in got["steps"]]
                b = [list(step["quantiles"].values()) for step in want["steps"]]
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


async def test_bulk_observe_answers_each_stream_on_its_own(client: AsyncTestClient[Any]) -> None:
    await client.put("/v1/streams/a", json={"model": "demo-lstm"})
    await client.put("/v1/streams/b", json={"model": "demo-gru"})
    before = (await client.get("/v1/streams/b")).json()
    body = {
        "streams": [
            {"id": 1, "stream_id": "a", "observations": [obs(0), obs(1)]},
            {"id": 2, "stream_id": "ghost", "observations": [obs(0)]},
            {"id": 3, "stream_id": "b", "observations": [{"timestamp": T0, "values": [1.0]}]},
            {"id": 4, "stream_id": "b", "observations": [obs(2), obs(1)]},
            {"id": 5, "stream_id": "bad\nid", "observations": [obs(0)]},
            {"id": 6, "stream_id": "a", "observations": [obs(1), obs(2)]},
        ]
    }
    r = await client.post("/v1/observations", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["id"] for x in results] == [1, 2, 3, 4, 5, 6]
    assert [x["status"] for x in results] == [200, 404, 422, 422, 422, 200]
    assert results[0]["result"]["seq"] == 2
    assert results[5]["result"]["applied"] == 1
    assert len(results[5]["result"]["skipped"]) == 1
    assert results[2]["error"]["field"] == "observations[0].values"
    assert results[3]["error"]["field"] == "streams[3].observations[1].timestamp"
    assert (await client.get("/v1/streams/b")).json() == before
    assert (await client.get("/v1/streams/ghost")).status_code == 404


async def test_bulk_limit_is_413(model_repository: Path) -> None:
    app = create_app(settings(model_repository, max_observations=3))
    async with AsyncTestClient(app=app) as c:
        await c.put("/v1/streams/a", json={"model": "demo-lstm"})
        body = {"streams": [{"stream_id": "a", "observations": [obs(i)]} for i in range(4)]}
        r = await c.post("/v1/observations", json=body)
        assert r.status_code == 413
        assert (await c.get("/v1/streams/a")).json()["seq"] == 0


@pytest.fixture
def sync_client(model_repository: Path) -> Iterator[TestClient[Any]]:
    app = create_app(settings(model_repository, ws_max_message_bytes=2048))
    with TestClient(app=app) as c:
        yield c


def test_websocket_observations_and_errors(sync_client: TestClient[Any]) -> None:
    sync_client.put("/v1/streams/w1", json={"model": "demo-lstm"})
    sync_client.put("/v1/streams/w2", json={"model": "demo-gru"})
    with sync_client.websocket_connect("/v1/ws") as ws:
        ws.send_text(json.dumps({"id": "m1", "stream_id": "w1", "observations": [obs(0)]}))
        answer = json.loads(ws.receive_text())
        assert answer["id"] == "m1"
        assert answer["status"] == 200
        assert answer["result"]["seq"] == 1
        ws.send_text(
            json.dumps(
                {
                    "streams": [
                        {"stream_id": "w1", "observations": [obs(1)]},
                        {"stream_id": "w2", "observations": [obs(0), obs(1)]},
                        {"stream_id": "nope", "observations": [obs(0)]},
                    ]
                }
            )
        )
        results = json.loads(ws.receive_text())["results"]
        assert [r["status"] for r in results] == [200, 200, 404]
        assert results[1]["result"]["seq"] == 2
        ws.send_text("{not json")
        assert json.loads(ws.receive_text())["status"] == 400
        ws.send_text(json.dumps({"stream_id": "w1"}))
        bad = json.loads(ws.receive_text())
        assert bad["status"] == 422
        ws.send_text(json.dumps({"stream_id": "w1", "observations": [obs(0)], "pad": "x" * 4096}))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1009
    assert sync_client.get("/v1/streams/w1").json()["seq"] == 2


def test_websocket_pipelined_messages_all_answered_in_order_per_stream(
    sync_client: TestClient[Any],
) -> None:
    for s in ("p1", "p2"):
        sync_client.put(f"/v1/streams/{s}", json={"model": "demo-lstm"})
    with sync_client.websocket_connect("/v1/ws") as ws:
        for i in range(20):
            for s in ("p1", "p2"):
                ws.send_text(
                    json.dumps({"id": f"{s}-{i}", "stream_id": s, "observations": [obs(i)]})
                )
        answers = [json.loads(ws.receive_text()) for _ in range(40)]
    assert all(a["status"] == 200 for a in answers)
    for s in ("p1", "p2"):
        seqs = [a["result"]["seq"] for a in answers if a["stream_id"] == s]
        assert sorted(seqs) == list(range(1, 21))
        assert all(a["result"]["applied"] == 1 for a in answers if a["stream_id"] == s)


def test_sse_sees_updates_made_by_another_replica(
    model_repository: Path, redis_url: str, tmp_path: Path
) -> None:
    env = {"FORECAST_MODEL_REPOSITORY": str(model_repository), "FORECAST_STORE_URL": redis_url}
    with (
        ServiceProcess(env, log=tmp_path / "a.log") as a,
        ServiceProcess(env, log=tmp_path / "b.log") as b,
    ):
        assert httpx.put(f"{a.url}/v1/streams/sub", json={"model": "demo-gru"}).status_code == 201
        with subscribed(f"{b.url}/v1/streams/sub/forecasts", 4) as events:
            time.sleep(1.5)  # other replicas learn of a new subscriber within about a second
            answers = [
                httpx.post(
                    f"{a.url}/v1/streams/sub/observations", json={"observations": [obs(i)]}
                ).json()
                for i in range(3)
            ]
        assert httpx.get(f"{b.url}/v1/streams/missing/forecasts").status_code == 404
    assert [e["event"] for e in events] == ["snapshot", "forecast", "forecast", "forecast"]
    assert events[0]["data"]["seq"] == 0
    assert [e["data"]["seq"] for e in events[1:]] == [1, 2, 3]
    assert [e["data"]["forecast"] for e in events[1:]] == [x["forecast"] for x in answers]


async def test_bulk_summary_answers_are_compact(client: AsyncTestClient[Any]) -> None:
    await client.put("/v1/streams/s", json={"model": "demo-lstm"})
    body = {"detail": "summary", "streams": [{"stream_id": "s", "observations": [obs(0), obs(1)]}]}
    r = await client.post("/v1/observations", json=body)
    assert r.status_code == 200, r.text
    (answer,) = r.json()["results"]
    assert answer["result"] is None
    summary = answer["summary"]
    assert summary["seq"] == 2
    assert summary["applied"] == 2
    assert summary["skipped"] == 0
    full = (await client.get("/v1/streams/s")).json()["forecast"]
    assert summary["median"] == [step["median"] for step in full["steps"]]
    assert summary["last_timestamp"] == full["origin"]


def test_step_times_are_iso_utc_with_fractions_only_when_needed() -> None:
    from service.api.schemas import step_times
    from service.forecaster import Forecast

    values = np.zeros((3, 1), dtype=np.float32)
    whole = Forecast("m", 1, "y", (0.5,), 60.0, 1_800_000_000.0, values, 0)
    assert step_times(whole) == [
        "2027-01-15T08:01:00Z",
        "2027-01-15T08:02:00Z",
        "2027-01-15T08:03:00Z",
    ]
    fraction = Forecast("m", 1, "y", (0.5,), 0.25, 1_800_000_000.5, values, 0)
    assert step_times(fraction)[0] == "2027-01-15T08:00:00.750000Z"
    assert step_times(Forecast("m", 1, "y", (0.5,), 1.0, None, values, 0)) == [None] * 3
