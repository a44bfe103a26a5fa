"""Missing readings (gap policies) and streams whose model weights changed (replay)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from models.onnx_builder import build_recurrent_model
from service.app import create_app
from service.settings import Settings
from service.state.keys import stream_key
from service.state.memory import MemoryStore
from service.state.record import StreamRecord

T0 = 1_800_000_000.0
HOUR = 3600.0


def obs(step: int) -> dict[str, Any]:
    return {"timestamp": T0 + HOUR * step, "values": [float(np.sin(step)), 10.0 + step]}


def app(repository: Path, store: MemoryStore, **overrides: Any) -> Any:
    settings = Settings(model_repository=repository, providers="cpu", **overrides)
    return create_app(settings, store=store)


def quantiles(forecast: dict[str, Any]) -> np.ndarray:
    return np.array([list(step["quantiles"].values()) for step in forecast["steps"]])


async def stateless(client: AsyncTestClient[Any], rows: list[dict[str, Any]]) -> np.ndarray:
    r = await client.post(
        "/v1/models/demo-lstm/forecast", json={"series": [{"observations": rows}]}
    )
    assert r.status_code == 200, r.text
    return quantiles(r.json()["forecasts"][0])


async def test_reject_policy_refuses_a_gap_and_changes_nothing(model_repository: Path) -> None:
    store = MemoryStore()
    async with AsyncTestClient(app=app(model_repository, store, gap_policy="reject")) as c:
        await c.put("/v1/streams/g", json={"model": "demo-lstm", "history": [obs(0), obs(1)]})
        before = await store.get(stream_key("fcst", "default", "g"))
        r = await c.post("/v1/streams/g/observations", json={"observations": [obs(2), obs(5)]})
        assert r.status_code == 422
        assert r.json()["field"] == "observations[1].timestamp"
        assert "2 reading(s) missing" in r.json()["detail"]
        r = await c.post("/v1/streams/g/observations", json={"observations": [obs(4)]})
        assert r.status_code == 422
        assert r.json()["field"] == "observations[0].timestamp"
        assert await store.get(stream_key("fcst", "default", "g")) == before
        # Small jitter is not a gap.
        jitter = {"timestamp": T0 + HOUR * 2 + 900, "values": [0.0, 1.0]}
        r = await c.post("/v1/streams/g/observations", json={"observations": [jitter]})
        assert r.status_code == 200


async def test_forward_policy_fills_with_the_last_reading(model_repository: Path) -> None:
    store = MemoryStore()
    async with AsyncTestClient(app=app(model_repository, store, gap_policy="forward")) as c:
        await c.put("/v1/streams/f", json={"model": "demo-lstm", "history": [obs(0), obs(1)]})
        r = await c.post(
            "/v1/streams/f/observations", json={"observations": [obs(4), obs(5), obs(7)]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["applied"] == 3
        assert body["filled"] == 3
        assert body["seq"] == 8
        filled = [
            obs(0),
            obs(1),
            {"timestamp": T0 + 2 * HOUR, "values": obs(1)["values"]},
            {"timestamp": T0 + 3 * HOUR, "values": obs(1)["values"]},
            obs(4),
            obs(5),
            {"timestamp": T0 + 6 * HOUR, "values": obs(5)["values"]},
            obs(7),
        ]
        np.testing.assert_allclose(
            quantiles(body["forecast"]), await stateless(c, filled), rtol=1e-4, atol=1e-5
        )
        record = StreamRecord.decode(await store.get(stream_key("fcst", "default", "f")) or b"")
        assert record.history_ts is not None
        assert list(record.history_ts) == [r["timestamp"] for r in filled]


async def test_a_gap_beyond_the_bound_needs_a_rewarm(model_repository: Path) -> None:
    store = MemoryStore()
    settings = {"gap_policy": "forward", "max_gap_steps": 3}
    async with AsyncTestClient(app=app(model_repository, store, **settings)) as c:
        await c.put("/v1/streams/b", json={"model": "demo-lstm", "history": [obs(0)]})
        r = await c.post("/v1/streams/b/observations", json={"observations": [obs(5)]})
        assert r.status_code == 409
        assert "re-warm" in r.json()["detail"]
        assert (await c.get("/v1/streams/b")).json()["seq"] == 1


async def test_accept_policy_feeds_readings_as_they_come(model_repository: Path) -> None:
    store = MemoryStore()
    async with AsyncTestClient(app=app(model_repository, store)) as c:
        await c.put("/v1/streams/a", json={"model": "demo-lstm"})
        r = await c.post("/v1/streams/a/observations", json={"observations": [obs(0), obs(9)]})
        assert r.json()["seq"] == 2
        assert r.json()["filled"] == 0


async def test_history_is_bounded(model_repository: Path) -> None:
    store = MemoryStore()
    async with AsyncTestClient(app=app(model_repository, store, history_length=4)) as c:
        await c.put(
            "/v1/streams/h", json={"model": "demo-lstm", "history": [obs(i) for i in range(6)]}
        )
        for i in range(6, 9):
            await c.post("/v1/streams/h/observations", json={"observations": [obs(i)]})
    record = StreamRecord.decode(await store.get(stream_key("fcst", "default", "h")) or b"")
    assert record.history_ts is not None
    assert record.history_values is not None
    assert list(record.history_ts) == [T0 + HOUR * i for i in range(5, 9)]
    assert record.history_values.shape == (4, 2)


@pytest.fixture
def upgraded(model_repository: Path, tmp_path: Path) -> Path:
    """The same model name served with other weights (a retrained version 2 only)."""
    repository = tmp_path / "upgraded"
    build_recurrent_model(
        repository / "demo-lstm" / "2",
        kind="lstm",
        name="demo-lstm",
        version=2,
        features=["load", "temp"],
        target="load",
        frequency=HOUR,
        seed=42,
    )
    return repository


async def test_replay_rebuilds_a_stream_under_new_weights(
    model_repository: Path, upgraded: Path
) -> None:
    store = MemoryStore()
    async with AsyncTestClient(app=app(model_repository, store, history_length=5)) as c:
        await c.put(
            "/v1/streams/u", json={"model": "demo-lstm", "history": [obs(i) for i in range(8)]}
        )
    async with AsyncTestClient(app=app(upgraded, store, on_model_change="reject")) as c:
        r = await c.post("/v1/streams/u/observations", json={"observations": [obs(8)]})
        assert r.status_code == 409
    async with AsyncTestClient(app=app(upgraded, store, on_model_change="replay")) as c:
        r = await c.post("/v1/streams/u/observations", json={"observations": [obs(8)]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == {"name": "demo-lstm", "version": 2}
        assert body["seq"] == 9
        # The kept history (last 5 readings) replayed through version 2, then the new one.
        expected = await stateless(c, [obs(i) for i in range(3, 9)])
        np.testing.assert_allclose(quantiles(body["forecast"]), expected, rtol=1e-4, atol=1e-5)
        # Rebuilt once: the next observation just continues.
        r = await c.post("/v1/streams/u/observations", json={"observations": [obs(9)]})
        expected = await stateless(c, [obs(i) for i in range(3, 10)])
        np.testing.assert_allclose(quantiles(r.json()["forecast"]), expected, rtol=1e-4, atol=1e-5)
        text = (await c.get("/metrics")).text
        assert 'forecast_streams_rebuilt_total{model="demo-lstm"} 1.0' in text
